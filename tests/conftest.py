"""Shared fixtures: where the project's shared data live, and the real entries in them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import aisolve.core  # noqa: F401  (cctbx first)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sucrose"


def shared_dir() -> Path | None:
    env = os.environ.get("AISOLVE_SHARED")
    cand = Path(env) if env else REPO.parent / "shared"
    return cand if (cand / "data").is_dir() else None


SHARED = shared_dir()
REAL = SHARED / "data" / "real" if SHARED else None
REFL_ONLY = SHARED / "data" / "reflections-only" if SHARED else None


def _entries(root: Path | None) -> list[Path]:
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir())


REAL_ENTRIES = _entries(REAL)
REFL_ONLY_ENTRIES = _entries(REFL_ONLY)

needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data is not present")


def entry_files(entry: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Top-level files of an entry folder with the given suffixes (not the raw source/ copies)."""
    return sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
