"""SHELX reflection files: HKLF 4 (h k l F^2 sigma) and HKLF 3 (h k l F sigma), format 3I4,2F8[,I4].

HKLF 5 files (twin component in the batch column) are read with the same layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aisolve.core.errors import InputError
from aisolve.core.model import ReflectionData


def _fixed_fields(line: str) -> tuple[list[int], float, float, int | None] | None:
    """Parse the fixed columns; None when the line does not fit them."""
    if len(line.rstrip()) < 28:
        return None
    try:
        hkl = [int(line[0:4]), int(line[4:8]), int(line[8:12])]
        val, sig = float(line[12:20]), float(line[20:28])
        batch_txt = line[28:32].strip()
        batch = int(batch_txt) if batch_txt else None
    except ValueError:
        return None
    return hkl, val, sig, batch


def _free_fields(line: str) -> tuple[list[int], float, float, int | None] | None:
    toks = line.split()
    if len(toks) not in (5, 6):
        return None
    try:
        hkl = [int(t) for t in toks[:3]]
        val, sig = float(toks[3]), float(toks[4])
        batch = int(toks[5]) if len(toks) == 6 else None
    except ValueError:
        return None
    return hkl, val, sig, batch


def read_hkl_text(text: str, source: str = "<hkl>", hklf: int = 4) -> ReflectionData:
    if hklf not in (3, 4, 5, 6):
        raise InputError(source, f"HKLF {hklf} is not a reflection format aisolve reads (3, 4, 5 or 6)")
    indices, values, sigmas, batches = [], [], [], []
    terminated = False
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = _fixed_fields(line) or _free_fields(line)
        if fields is None:
            if n == len(lines) and not text.endswith("\n"):
                raise InputError(source, f"last line is incomplete, the file looks truncated: {line.strip()!r}", n)
            raise InputError(source, "not a reflection line (expected h k l value sigma in "
                                     f"format 3I4,2F8): {line.strip()[:50]!r}", n)
        hkl, val, sig, batch = fields
        if hkl == [0, 0, 0]:
            terminated = True
            break
        indices.append(hkl)
        values.append(val)
        sigmas.append(sig)
        batches.append(batch)
    if not indices:
        raise InputError(source, "no reflections in file")
    data = ReflectionData(
        indices=np.array(indices, dtype=np.int32), data=np.array(values), sigmas=np.array(sigmas),
        is_intensity=hklf != 3, hklf=hklf, merged=False, source=source,
        batch=np.array([b or 0 for b in batches], dtype=np.int32) if any(b is not None for b in batches) else None)
    if not terminated:
        data.warnings.append("no '0 0 0' end line: the file may be truncated")
    return data


def read_hkl(path: str | Path, hklf: int = 4) -> ReflectionData:
    path = Path(path)
    try:
        text = path.read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror}") from None
    return read_hkl_text(text, str(path), hklf)


def _f8(value: float) -> str:
    """F8 field: 2 decimals as SHELX writes, more if the value carries more, fewer if it is large."""
    fitting = [f"{value:8.{d}f}" for d in (2, 3, 4, 5, 1, 0)]
    fitting = [s for s in fitting if len(s) == 8]
    if not fitting:
        raise ValueError(f"{value} does not fit the HKLF F8 field; scale the data down")
    exact = [s for s in fitting if float(s) == value]
    return exact[0] if exact else max(fitting, key=lambda s: len(s.split(".")[-1]))


def write_hkl_text(refl: ReflectionData) -> str:
    lines = []
    for i, (h, k, l) in enumerate(refl.indices):
        s = f"{h:4d}{k:4d}{l:4d}{_f8(refl.data[i])}{_f8(refl.sigmas[i])}"
        if refl.batch is not None:
            s += f"{int(refl.batch[i]):4d}"
        lines.append(s)
    lines.append(f"{0:4d}{0:4d}{0:4d}{_f8(0.0)}{_f8(0.0)}")
    return "\n".join(lines) + "\n"
