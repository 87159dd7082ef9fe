"""Write a solve result: X.res (AFIX blocks), X.cif (model + figures), X.fcf, report.json."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from aisolve.core.cif_io import write_cif_text
from aisolve.core.fcf import fcf_text_from_arrays
from aisolve.core.pipeline import SolveResult
from aisolve.core.shelx_write import write_ins_text

AMBIGUOUS_RATIO = 0.5  # second-best element at least half as likely as the best: flagged


def safe_write(path: Path, text: str, protected: set[Path]) -> Path:
    """Write `text` to `path`; never over an input file, and keep a numbered backup of an old output."""
    return safe_write_bytes(path, text.encode("utf-8"), protected)


def safe_write_bytes(path: Path, data: bytes, protected: set[Path]) -> Path:
    path = Path(path)
    if path.resolve() in protected:
        raise ValueError(f"refusing to overwrite the input file {path}")
    if path.exists():
        n = 1
        while path.with_name(f"{path.name}.{n}").exists():
            n += 1
        shutil.move(str(path), str(path.with_name(f"{path.name}.{n}")))
    path.write_bytes(data)
    return path


def hydrogen_counts(atoms) -> list[int]:
    """H riding on each non-H atom: the AFIX H atoms that follow it in the atom list."""
    counts: list[int] = []
    for a in atoms:
        if a.element in ("H", "D"):
            if a.afix and counts:
                counts[-1] += 1
        else:
            counts.append(0)
    return counts


def atom_report(result: SolveResult) -> list[dict]:
    rows = []
    heavy = result.structure.non_h_atoms()
    for a, n_h in zip(heavy, hydrogen_counts(result.structure.atoms)):
        probs = a.element_probabilities or {a.element: 1.0}
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        second = ranked[1] if len(ranked) > 1 else None
        rows.append({
            "label": a.label, "element": a.element, "xyz": [round(v, 5) for v in a.xyz],
            "confidence": round(a.confidence if a.confidence is not None else ranked[0][1], 4),
            "probabilities": {k: round(v, 4) for k, v in ranked[:4]},
            "second_best": second[0] if second else None,
            "ambiguous": bool(second and second[1] >= AMBIGUOUS_RATIO * ranked[0][1]),
            "n_hydrogens": n_h,
        })
    return rows


def build_report(result: SolveResult, inputs: dict, options: dict) -> dict:
    f = result.figures
    ph = result.phasing
    return {
        "aisolve_version": "0.1.0",
        "solved": result.solved,
        "inputs": inputs,
        "options": options,
        "formula_used": result.formula_used,
        "space_group": result.structure.space_group_symbol,
        "cell": list(result.structure.cell),
        "figures": f.as_dict() if f else None,
        "data": None if result.data is None else {
            "n_measured": result.data.n_measured, "n_unique": result.data.fo_sq.size(),
            "d_min": round(result.data.d_min, 4), "r_int": result.data.r_int,
            "wilson_b": round(result.data.wilson_b, 3)},
        "phasing": None if ph is None else {
            "route": ph.route, "figure_of_merit": ph.figure_of_merit, "notes": ph.notes,
            "trials": [t.__dict__ for t in ph.trials]},
        "stages": result.stages,
        "model": {"formula_asu": _formula(result), "n_non_h": len(result.structure.non_h_atoms()),
                  "n_h": len(result.structure.hydrogens())},
        "atoms": atom_report(result),
        "warnings": result.warnings,
    }


def _formula(result: SolveResult) -> str:
    from aisolve.core.elements import hill_formula
    counts: dict[str, float] = {}
    for a in result.structure.atoms:
        counts[a.element] = counts.get(a.element, 0) + a.occupancy
    return hill_formula(counts)


def write_outputs(result: SolveResult, outdir: Path, stem: str, inputs: dict, options: dict,
                  protected: set[Path], hkl_text: str | None = None) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    report = build_report(result, inputs, options)
    written["report"] = safe_write(outdir / "report.json", json.dumps(report, indent=1, default=_json_default), protected)
    if result.figures is None:
        return written
    st = result.structure
    f = result.figures
    st.fvar = [math.sqrt(f.scale)]
    st.header_lines = [f"REM aisolve {('solution' if result.solved else 'best attempt')}: R1 {f.r1:.4f} "
                       f"(Fo > 4sig), wR2 {f.wr2:.4f}, GooF {f.goof:.3f}, {f.n_data} data, {f.n_parameters} parameters",
                       f"REM phasing: {result.phasing.route if result.phasing else 'none'}"] + \
        st.header_lines + [f"WGHT {f.weight_a:.4f} {f.weight_b:.4f}"]
    res_text = write_ins_text(st)
    written["res"] = safe_write(outdir / f"{stem}.res", res_text, protected)
    pairs = {
        "_refine_ls_R_factor_gt": f"{f.r1:.4f}", "_refine_ls_R_factor_all": f"{f.r1_all:.4f}",
        "_refine_ls_wR_factor_ref": f"{f.wr2:.4f}", "_refine_ls_goodness_of_fit_ref": f"{f.goof:.3f}",
        "_refine_ls_number_reflns": str(f.n_data), "_refine_ls_number_parameters": str(f.n_parameters),
        "_reflns_number_gt": str(f.n_strong), "_refine_ls_hydrogen_treatment": "constr",
        "_refine_ls_structure_factor_coef": "Fsqd",
        "_refine_ls_weighting_details": f"'w=1/[s^2^(Fo^2^)+({f.weight_a:.4f}P)^2^+{f.weight_b:.4f}P] "
                                        "where P=(Fo^2^+2Fc^2^)/3'",
        "_computing_structure_solution": f"'aisolve ({result.phasing.route if result.phasing else 'none'})'",
        "_computing_structure_refinement": "'aisolve (smtbx least squares)'",
    }
    written["cif"] = safe_write(outdir / f"{stem}.cif",
                                write_cif_text(st, block_name=stem, res_text=res_text, hkl_text=hkl_text,
                                               pairs=pairs), protected)
    if result.f_calc is not None and result.data is not None:
        written["fcf"] = safe_write(outdir / f"{stem}.fcf", fcf_text_from_arrays(
            stem, st.cell, st.space_group, result.data.fo_sq, result.f_calc, math.sqrt(f.scale)), protected)
    return written


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)
