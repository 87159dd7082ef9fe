"""Assemble what `solve` needs from the user's files: a template (cell, symmetry, contents) and data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aisolve.core import symmetry
from aisolve.core.cif_io import read_cif, split_block
from aisolve.core.elements import parse_formula
from aisolve.core.errors import InputError
from aisolve.core.loaders import data_hklf, kind_of, load_reflections, load_structure, require_file
from aisolve.core.model import ReflectionData, Structure
from aisolve.core.shelx_ins import read_ins_text


@dataclass
class SolveInputs:
    template: Structure  # cell, symmetry, wavelength, contents; no atoms unless asked to keep them
    reflections: ReflectionData
    stem: str
    files: list[Path]
    hkl_text: str | None  # the SHELX reflection text to embed in the result CIF


def _template(st: Structure) -> Structure:
    st.atoms, st.peaks = [], []
    return st


def load_solve_inputs(paths: list[str], cell: list[float] | None = None, spacegroup: str | None = None,
                      formula: str | None = None, z: float | None = None,
                      wavelength: float | None = None, keep_model: bool = False) -> SolveInputs:
    for p in paths:
        require_file(p)
    kinds = [kind_of(p) for p in paths]
    template: Structure | None = None
    refl: ReflectionData | None = None
    hkl_text = None
    if kinds.count("structure") > 1 or len(paths) > 2:
        raise InputError(paths[-1], "give one model file (.ins/.res) and one reflection file, or one CIF")
    for p, kind in zip(paths, kinds):
        if kind == "structure":
            template = load_structure(p)
        elif kind == "cif":
            content = read_cif(p)
            if content.res_text:
                template = read_ins_text(content.res_text, f"{p} (_shelx_res_file)")
            elif content.structure is not None:
                template = content.structure
            if content.reflections is not None:
                refl, hkl_text = content.reflections, content.hkl_text
    for p, kind in zip(paths, kinds):
        if kind == "reflections":
            refl = load_reflections(p, data_hklf(template) if template else 4)
            if Path(p).suffix.lower() == ".hkl":
                hkl_text = Path(p).read_text(errors="replace")
    if refl is None:
        raise InputError(paths[0], "no reflections: give an .hkl, .mtz or a CIF with reflections")
    if template is None:
        template = _template_from_options(paths[0], refl, cell, spacegroup, wavelength)
    else:
        template = template if keep_model else _template(template)
        if cell or spacegroup:
            _override(template, paths[0], cell, spacegroup)
    if wavelength:
        template.wavelength = wavelength
    elif refl.wavelength and not any(k == "structure" for k in kinds):
        template.wavelength = refl.wavelength
    if formula:
        try:
            per_unit = parse_formula(formula)
        except ValueError as exc:
            raise InputError("--formula", str(exc)) from None
        n_units = z if z else template.space_group.order_z()
        template.cell_contents = {el: n * n_units for el, n in per_unit.items()}
    stem = split_block(paths[0])[0].stem
    return SolveInputs(template, refl, stem, [split_block(p)[0] for p in paths], hkl_text)


def _template_from_options(source, refl: ReflectionData, cell, spacegroup, wavelength) -> Structure:
    cell = tuple(cell) if cell else refl.cell
    if cell is None:
        raise InputError(source, "no cell: give --cell a b c alpha beta gamma (or an .ins/.res)")
    if spacegroup:
        try:
            group = symmetry.from_symbol(spacegroup)
        except symmetry.SymmetryError as exc:
            raise InputError("--spacegroup", str(exc)) from None
    elif refl.space_group is not None:
        group = refl.space_group
    else:
        raise InputError(source, "no space group: give --spacegroup (or an .ins/.res)")
    return Structure(cell=tuple(cell), space_group=group, title=Path(str(source)).stem,
                     wavelength=wavelength or refl.wavelength or 0.71073)


def _override(template: Structure, source, cell, spacegroup) -> None:
    if cell:
        template.cell = tuple(cell)
    if spacegroup:
        try:
            template.space_group = symmetry.from_symbol(spacegroup)
        except symmetry.SymmetryError as exc:
            raise InputError("--spacegroup", str(exc)) from None
