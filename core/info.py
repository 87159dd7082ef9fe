"""What `aisolve info` reports about a file: model, symmetry and reflection figures."""
from __future__ import annotations

from pathlib import Path

from cctbx import crystal

from aisolve.core.cif_io import read_cif
from aisolve.core.elements import hill_formula
from aisolve.core.errors import InputError
from aisolve.core.loaders import (require_file, companion_model, data_hklf, kind_of, load_reflections,
                                  load_structure)
from aisolve.core.model import ReflectionData, Structure
from aisolve.core.reflection_stats import summarise


def _structure_info(st: Structure) -> dict:
    asu: dict[str, float] = {}
    for a in st.atoms:
        asu[a.element] = asu.get(a.element, 0.0) + a.occupancy
    return {
        "cell": [round(x, 5) for x in st.cell],
        "space_group": st.space_group_symbol,
        "space_group_number": st.space_group.type().number(),
        "wavelength": st.wavelength,
        "cell_contents": st.formula() or None,
        "model_formula_asu": hill_formula(asu) if asu else None,
        "n_atoms": len(st.atoms),
        "n_non_h": len(st.non_h_atoms()),
        "n_h": len(st.hydrogens()),
        "n_q_peaks": len(st.peaks),
        "warnings": list(st.warnings),
    }


def _reflection_info(refl: ReflectionData, sym: crystal.symmetry) -> dict:
    try:
        s = summarise(refl, sym)
    except ValueError as exc:
        raise InputError(refl.source, str(exc)) from None
    return {
        "n_reflections": s.n_measured,
        "n_unique": s.n_unique,
        "d_min": round(s.d_min, 4),
        "d_max": round(s.d_max, 3),
        "completeness": round(s.completeness, 4),
        "mean_i_over_sigma" if s.is_intensity else "mean_f_over_sigma":
            None if s.mean_i_over_sigma != s.mean_i_over_sigma else round(s.mean_i_over_sigma, 2),
        "systematic_absences": [{"zone": a.zone, "count": a.count, "mean_i_over_sigma": round(a.mean_i_over_sigma, 2)}
                                for a in s.absences],
        "warnings": s.warnings,
    }


def file_info(path: str | Path) -> dict:
    require_file(path)
    kind = kind_of(path)
    out: dict = {"file": str(path)}
    if kind == "structure":
        st = load_structure(path)
        out["model"] = _structure_info(st)
        hkl = Path(path).with_suffix(".hkl")
        if hkl.is_file():
            out["reflections_file"] = str(hkl)
            out["reflections"] = _reflection_info(load_reflections(hkl, data_hklf(st)), st.symmetry)
        return out
    if kind == "cif":
        content = read_cif(path)
        out["data_block"] = content.block
        if content.structure is not None:
            out["model"] = _structure_info(content.structure)
        refl = content.reflections
        if refl is not None:
            sym = _symmetry_for(refl, content.structure, path)
            out["reflections"] = _reflection_info(refl, sym)
        return out
    # reflections
    if Path(str(path)).suffix.lower() == ".hkl":
        model_path = companion_model(path)
        if model_path is None:
            return _bare_hkl_info(path, out)
        st = load_structure(model_path)
        out["cell_from"] = str(model_path)
        refl = load_reflections(path, data_hklf(st))
        out["model"] = {k: v for k, v in _structure_info(st).items()
                        if k in ("cell", "space_group", "space_group_number", "cell_contents")}
        out["reflections"] = _reflection_info(refl, st.symmetry)
        return out
    refl = load_reflections(path)
    sym = _symmetry_for(refl, None, path)
    out["model"] = {"cell": [round(x, 5) for x in sym.unit_cell().parameters()],
                    "space_group": str(sym.space_group_info())}
    out["reflections"] = _reflection_info(refl, sym)
    return out


def _bare_hkl_info(path, out: dict) -> dict:
    """An .hkl with no model beside it: what can be said without a cell."""
    refl = load_reflections(path)
    ok = refl.sigmas > 0
    out["reflections"] = {
        "n_reflections": len(refl),
        "index_range": [[int(refl.indices[:, i].min()), int(refl.indices[:, i].max())] for i in range(3)],
        "mean_i_over_sigma": round(float((refl.data[ok] / refl.sigmas[ok]).mean()), 2) if ok.any() else None,
        "warnings": refl.warnings + ["no .ins/.res/.cif with the same name beside it: no cell, so no d_min, "
                                     "completeness or absence check"],
    }
    return out


def _symmetry_for(refl: ReflectionData, st: Structure | None, path) -> crystal.symmetry:
    if refl.cell is not None and refl.space_group is not None:
        return crystal.symmetry(unit_cell=refl.cell, space_group=refl.space_group)
    if st is not None:
        return st.symmetry
    raise InputError(path, "the reflections come without a cell and space group")
