"""Crystallographic core of aisolve: data model, file formats, classical methods.

No machine learning and no networking live here.
"""
# cctbx must be loaded before gemmi, torch or rdkit: cctbx-base bundles a newer libstdc++ and
# importing it second crashes the interpreter. Doing it here, once, makes the crash impossible
# for anyone who goes through the aisolve package.
from aisolve.core import _cctbx_first  # noqa: F401  (import for its side effect)
