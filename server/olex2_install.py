"""`aisolve install-olex2`: copy the plugin and the thin client into an Olex2 installation.

Olex2 finds plugins in <olex2>/util/pyUtil/PluginLib/plugin-NAME/ and loads those named in the
Plugin block of <olex2>/plugins.xld. The thin client (pyzmq only) is bundled inside the plugin
folder, so Olex2's Python needs nothing but pyzmq (`pip pyzmq` on Olex2's command line).
plugins.xld is edited with a backup beside it (plugins.xld.aisolve-backup).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from aisolve.server.host_install import InstallError, copy_with_client

NAME = "AISolve"
SOURCE = Path(__file__).resolve().parents[1] / "olex2_plugin" / f"plugin-{NAME}"


def _target(olex2_dir: Path) -> Path:
    return olex2_dir / "util" / "pyUtil" / "PluginLib" / f"plugin-{NAME}"


def _check(olex2_dir: Path) -> None:
    if not (olex2_dir / "util" / "pyUtil").is_dir():
        raise InstallError(f"{olex2_dir}: not an Olex2 installation (no util/pyUtil folder)")
    if not SOURCE.is_dir():
        raise InstallError(f"the plugin files are not beside this aisolve ({SOURCE}); install aisolve from "
                           "its source folder (pip install -e .)")


def _edit_xld(olex2_dir: Path, add: bool) -> None:
    xld = olex2_dir / "plugins.xld"
    text = xld.read_text() if xld.exists() else "<Plugin\n>\n"
    if xld.exists():
        shutil.copyfile(xld, xld.with_name("plugins.xld.aisolve-backup"))
    entry = re.compile(rf"^\s*<{NAME}>\s*\n?", re.M)
    text = entry.sub("", text)
    if add:
        if "<Plugin" not in text:
            text += "<Plugin\n>\n"
        text = text.replace("<Plugin", f"<Plugin\n<{NAME}>", 1)
    xld.write_text(text)


def install(olex2_dir: str | Path) -> list[str]:
    olex2_dir = Path(olex2_dir)
    _check(olex2_dir)
    target = _target(olex2_dir)
    copy_with_client(SOURCE, target, target)
    _edit_xld(olex2_dir, add=True)
    return [f"installed the plugin in {target}",
            f"registered {NAME} in {olex2_dir / 'plugins.xld'} (backup: plugins.xld.aisolve-backup)",
            "next: start Olex2, type 'pip pyzmq' on its command line, restart Olex2;",
            "      the AI solve panel is in the Tools tab; set the server address there "
            "(start a server with 'aisolve serve')"]


def uninstall(olex2_dir: str | Path) -> list[str]:
    olex2_dir = Path(olex2_dir)
    if not (olex2_dir / "util" / "pyUtil").is_dir():
        raise InstallError(f"{olex2_dir}: not an Olex2 installation (no util/pyUtil folder)")
    target = _target(olex2_dir)
    if target.exists():
        shutil.rmtree(target)
    _edit_xld(olex2_dir, add=False)
    return [f"removed {target} and the {NAME} entry of plugins.xld"]
