"""What the Olex2 and CCP4i2 installers share: a fresh copy of the integration's folder with the
pyzmq-only thin client bundled in it, so that the host's Python needs nothing else."""
from __future__ import annotations

import shutil
from pathlib import Path

CLIENT_FILES = ("__init__.py", "client.py", "protocol.py")


class InstallError(Exception):
    pass


def copy_with_client(source: Path, target: Path, client_root: Path) -> None:
    """Replace `target` by a copy of `source`; put the thin client in client_root/aisolve/server."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    client = client_root / "aisolve" / "server"
    client.mkdir(parents=True)
    for name in CLIENT_FILES:
        shutil.copyfile(Path(__file__).parent / name, client / name)
