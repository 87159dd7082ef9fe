"""`aisolve install-ccp4i2`: add the aisolve task to a classic CCP4i2 installation.

Classic CCP4i2 finds every CPluginScript under wrappers/ and caches the list in
core/CachedLookups.json: the task folder is copied to wrappers/aisolve (with the thin client
bundled beside it) and the cache is removed so that CCP4i2 rebuilds it. CCP4i2 3.x keeps a
static task table instead: the task registers itself when its module is imported (see README).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from aisolve.server.host_install import InstallError, copy_with_client

SOURCE = Path(__file__).resolve().parents[1] / "ccp4i2_task" / "aisolve"


def install(ccp4i2_dir: str | Path) -> list[str]:
    top = Path(ccp4i2_dir)
    if not (top / "wrappers").is_dir() or not (top / "core").is_dir():
        raise InstallError(f"{top}: not a classic CCP4i2 folder (no wrappers/ and core/)")
    if not SOURCE.is_dir():
        raise InstallError(f"the task files are not beside this aisolve ({SOURCE}); install aisolve from its "
                           "source folder (pip install -e .)")
    target = top / "wrappers" / "aisolve"
    # the client under its own folder: the task module itself is called aisolve.py
    copy_with_client(SOURCE, target, target / "script" / "thin_client")
    cache = top / "core" / "CachedLookups.json"
    lines = [f"installed the task in {target}"]
    if cache.exists():
        cache.unlink()
        lines.append(f"removed {cache}: CCP4i2 rebuilds its task list at the next start")
    lines.append("next: restart CCP4i2; the task 'aisolve' is under Experimental phasing; "
                 "set its SERVER to an aisolve server or leave it empty to run the local 'aisolve' command")
    return lines


def uninstall(ccp4i2_dir: str | Path) -> list[str]:
    top = Path(ccp4i2_dir)
    target = top / "wrappers" / "aisolve"
    if target.exists():
        shutil.rmtree(target)
    cache = top / "core" / "CachedLookups.json"
    if cache.exists():
        cache.unlink()
    return [f"removed {target}"]
