"""Stand-in for Olex2's `olex_xgrid` (map display): records what the plugin pushes."""
from _state import STATE


def Import(dims, focus_dims, data, is_int):
    n = 1
    for d in dims:
        n *= d
    if len(data) != 4 * n or is_int:
        raise ValueError("olex_xgrid.Import: the bytes do not hold dims floats")
    STATE.log.append(f"xgrid.Import {'x'.join(str(d) for d in dims)}")
    STATE.map = (list(dims), bytes(data))


def SetMinMax(lo, hi):
    STATE.log.append("xgrid.SetMinMax")


def SetVisible(on):
    STATE.log.append(f"xgrid.SetVisible {bool(on)}")


def InitSurface(on):
    STATE.log.append("xgrid.InitSurface")
