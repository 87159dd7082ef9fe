"""Stand-in for Olex2's `olx` module (see _state.py)."""
from types import SimpleNamespace

from _state import STATE


def Echo(text, m="info"):
    STATE.messages.append((m, str(text)))


def Refresh():
    STATE.refreshes += 1


def HKLF():
    return str(STATE.structure.hklf)


def _end_update():
    STATE.log.append("EndUpdate")


xf = SimpleNamespace(
    au=SimpleNamespace(NewAtom=lambda label, x, y, z: STATE.new_atom(label, float(x), float(y), float(z)),
                       GetCell=lambda: ",".join(str(v) for v in STATE.structure.cell)),
    EndUpdate=_end_update,
    exptl=SimpleNamespace(Radiation=lambda: str(STATE.structure.wavelength)),
)
