"""Stand-in for Olex2's `olex` module: macros go to the recorded state (see _state.py)."""
from _state import STATE


def m(macro):
    STATE.macro(macro)
