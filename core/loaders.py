"""Open any supported file by its extension, with one clear error for anything else."""
from __future__ import annotations

from pathlib import Path

from aisolve.core.cif_io import read_cif, split_block
from aisolve.core.errors import InputError
from aisolve.core.model import ReflectionData, Structure
from aisolve.core.mtz_io import read_mtz
from aisolve.core.shelx_hkl import read_hkl
from aisolve.core.shelx_ins import read_ins

STRUCTURE_SUFFIXES = (".ins", ".res")
REFLECTION_SUFFIXES = (".hkl", ".mtz", ".fcf")
CIF_SUFFIXES = (".cif",)


def kind_of(path: str | Path) -> str:
    """'structure', 'reflections' or 'cif'."""
    file_path, _ = split_block(path)
    suffix = file_path.suffix.lower()
    if suffix in STRUCTURE_SUFFIXES:
        return "structure"
    if suffix in REFLECTION_SUFFIXES:
        return "reflections"
    if suffix in CIF_SUFFIXES:
        return "cif"
    raise InputError(path, "unsupported file type (aisolve reads .ins, .res, .hkl, .cif, .fcf and .mtz)")


def require_file(path: str | Path) -> None:
    file_path, _ = split_block(path)
    if not file_path.is_file():
        raise InputError(file_path, "no such file")


def load_structure(path: str | Path) -> Structure:
    require_file(path)
    kind = kind_of(path)
    if kind == "structure":
        return read_ins(path)
    if kind == "cif":
        content = read_cif(path)
        if content.structure is None:
            raise InputError(path, "CIF has no atoms and no embedded SHELX file: it holds no model")
        return content.structure
    raise InputError(path, "holds reflections, not a model")


def load_reflections(path: str | Path, hklf: int = 4) -> ReflectionData:
    require_file(path)
    file_path, _ = split_block(path)
    suffix = file_path.suffix.lower()
    if suffix == ".hkl":
        return read_hkl(path, hklf)
    if suffix == ".mtz":
        return read_mtz(path)
    if suffix in (".cif", ".fcf"):
        refl = read_cif(path).reflections
        if refl is None:
            raise InputError(path, "no reflections in this CIF (no _refln loop or embedded hkl)")
        return refl
    raise InputError(path, "holds a model, not reflections")


def data_hklf(st: Structure) -> int:
    """The HKLF code to read the model's reflections with; SHELX-76 codes 1/2 fall back to 4."""
    if st.hklf in (3, 4, 5, 6):
        return st.hklf
    if st.hklf is not None:
        st.warnings.append(f"HKLF {st.hklf} is not read by aisolve; the data are read as HKLF 4 (F^2, sigma)")
    return 4


def companion_model(hkl_path: str | Path) -> Path | None:
    """The model beside an .hkl with the same stem (.res preferred: it is the refined model)."""
    p = Path(hkl_path)
    for suffix in (".res", ".ins", ".cif", ".RES", ".INS", ".CIF"):
        cand = p.with_suffix(suffix)
        if cand.is_file():
            return cand
    return None
