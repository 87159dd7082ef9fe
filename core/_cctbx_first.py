"""Make the cctbx import-order crash impossible for anyone who imports aisolve.

cctbx-base bundles a newer libstdc++ than torch, rdkit and gemmi load; when one of those comes
first, importing cctbx afterwards segfaults. We load cctbx's libstdc++ globally (cheap), then
cctbx itself. If a library that triggers the crash is already loaded and cctbx is not, we stop
with an explanation instead of letting the interpreter crash.
"""
import ctypes
import glob
import importlib.util
import os
import sys

_CULPRITS = ("torch", "gemmi", "rdkit", "onnxruntime", "torchmdnet")


def _bundled_libstdcxx() -> str | None:
    spec = importlib.util.find_spec("cctbx")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = os.path.dirname(list(spec.submodule_search_locations)[0])
    found = sorted(glob.glob(os.path.join(site, "cctbx_base.libs", "libstdc++*")))
    return found[0] if found else None


if "cctbx_array_family_flex_ext" not in sys.modules:
    early = [m for m in _CULPRITS if m in sys.modules]
    if early:
        raise ImportError(
            f"aisolve must be imported before {', '.join(early)}: cctbx (used by aisolve) crashes "
            "when loaded after them. Put 'import aisolve.core' first in your script.")
    _lib = _bundled_libstdcxx()
    if _lib:
        ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)

import boost_adaptbx.boost.python  # noqa: E402,F401
from cctbx.array_family import flex  # noqa: E402,F401
