"""CurveZMQ key pairs for the server, its clients and remote workers (`aisolve keys`).

Each pair is two files made by pyzmq: NAME.key (public, safe to hand out) and NAME.key_secret
(keep private). The server allows exactly the clients whose public keys lie in its allow-list
folder; a client needs the server's public key and its own pair.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import zmq.auth


def create(folder: str | Path, name: str) -> tuple[Path, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / f"{name}.key_secret").exists():
        raise FileExistsError(f"{folder / (name + '.key_secret')} exists: keys are never overwritten")
    public, secret = zmq.auth.create_certificates(str(folder), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_secret(folder: str | Path, name: str) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(Path(folder) / f"{name}.key_secret"))
    return public, secret


def load_public(path: str | Path) -> bytes:
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def allow(allow_dir: str | Path, public_key_file: str | Path) -> Path:
    """Copy a client's public key into the server's allow-list folder."""
    allow_dir = Path(allow_dir)
    allow_dir.mkdir(parents=True, exist_ok=True)
    target = allow_dir / Path(public_key_file).name
    shutil.copyfile(public_key_file, target)
    return target
