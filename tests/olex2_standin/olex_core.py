"""Stand-in for Olex2's `olex_core` module."""
from _state import STATE


def GetRefinementModel(calc_connectivity=False):
    return STATE.refinement_model()


def IncRunningThreadsCount():
    pass


def DecRunningThreadsCount():
    pass
