"""A starting model from the user (an earlier or partial solution) as the pipeline's phasing stage.

The model's non-H atoms give phases for the observed amplitudes; the pipeline then finds, types,
completes and refines the atoms from that map exactly as after charge flipping, so a partial
model grows into a complete one and wrong elements in it are corrected by the data.
Read from SHELX .ins/.res, a small-molecule CIF, or a macromolecular-style mmCIF/PDB (what
CCP4i2 passes as a coordinate file).
"""
from __future__ import annotations

import math
from pathlib import Path

import gemmi
from cctbx import crystal, sgtbx
from libtbx import Auto

from aisolve.core.data_prep import PreparedData
from aisolve.core.elements import element_from_label
from aisolve.core.errors import InputError
from aisolve.core.loaders import load_structure, require_file
from aisolve.core.model import Atom, Structure
from aisolve.core.peaks import model_phased
from aisolve.core.phasing import map_skewness
from aisolve.core.stages import PhasingResult, Progress, no_progress

CELL_LENGTH_TOLERANCE = 0.02  # relative
CELL_ANGLE_TOLERANCE = 1.0  # degrees


def read_start_model(path: str | Path, data_cell: tuple[float, ...]) -> Structure:
    """The model's atoms (H dropped), checked against the data's cell; clear errors otherwise."""
    path = Path(path)
    require_file(path)
    if path.suffix.lower() in (".pdb", ".ent") or (path.suffix.lower() == ".cif" and _is_mmcif(path)):
        model = _read_coordinates(path)
    else:
        model = load_structure(path)
    model.atoms = [a for a in model.non_h_atoms()]
    if not model.atoms:
        raise InputError(path, "the starting model has no non-H atoms")
    problem = _cell_mismatch(model.cell, data_cell)
    if problem:
        raise InputError(path, f"the starting model's cell does not fit the data: {problem}")
    return model


def _is_mmcif(path: Path) -> bool:
    try:
        block = gemmi.cif.read(str(path)).sole_block()
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"not a readable CIF: {exc}") from None
    return bool(block.find_values("_atom_site.Cartn_x"))


def _read_coordinates(path: Path) -> Structure:
    try:
        st = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as exc:
        raise InputError(path, f"not a readable coordinate file: {exc}") from None
    if not st.cell.is_crystal():
        raise InputError(path, "the coordinate file has no unit cell (CRYST1 / _cell)")
    atoms = []
    for residue in (r for chain in st[0] for r in chain):
        for a in residue:
            element = a.element.name if a.element.name not in ("X", "") else (element_from_label(a.name) or "C")
            frac = st.cell.fractionalize(a.pos)
            atoms.append(Atom(label=a.name, element=element.capitalize(), xyz=(frac.x, frac.y, frac.z),
                              occupancy=a.occ, uiso=a.b_iso / (8 * math.pi ** 2) if a.b_iso > 0 else 0.03))
    group = st.find_spacegroup()
    return Structure(cell=tuple(st.cell.parameters), atoms=atoms, source=str(path),
                     space_group=sgtbx.space_group(group.hall if group else "P 1"))


def _cell_mismatch(model_cell, data_cell) -> str | None:
    for k, name in enumerate(("a", "b", "c")):
        if abs(model_cell[k] - data_cell[k]) > CELL_LENGTH_TOLERANCE * data_cell[k]:
            return f"{name} = {model_cell[k]:.3f} A, the data's {data_cell[k]:.3f} A"
    for k, name in enumerate(("alpha", "beta", "gamma"), start=3):
        if abs(model_cell[k] - data_cell[k]) > CELL_ANGLE_TOLERANCE:
            return f"{name} = {model_cell[k]:.2f}, the data's {data_cell[k]:.2f} degrees"
    return None


class StartingModelPhaser:
    """Phases from a given model: the observed amplitudes with the model's phases."""

    name = "starting_model"

    def __init__(self, model: Structure):
        self.model = model

    def phase(self, data: PreparedData, symmetry: crystal.symmetry, time_budget: float = 0.0,
              progress: Progress = no_progress) -> PhasingResult:
        placed = Structure(cell=symmetry.unit_cell().parameters(), space_group=symmetry.space_group(),
                           atoms=self.model.non_h_atoms())
        xs = placed.to_xray(include_hydrogens=False)
        f_model = data.f_obs.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
        coefficients = model_phased(data.f_obs, f_model)
        r1 = data.f_obs.r1_factor(f_model, scale_factor=Auto)  # |Fc| scaled to Fo by least squares
        skew = map_skewness(coefficients)
        progress(1.0, "phases from the starting model")
        return PhasingResult(route=self.name, f_calc=coefficients, figure_of_merit=skew,
                             notes=[f"phases from the starting model ({xs.scatterers().size()} non-H atoms, "
                                    f"R1 on F {r1:.3f} before any refinement)"],
                             candidates=[(skew, coefficients)])
