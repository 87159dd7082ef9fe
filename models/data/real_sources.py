"""Real structures from the training CIFs: real packing and chemistry, metals included."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from aisolve.core.cif_io import read_cif
from aisolve.core.elements import hill_formula, parse_formula
from aisolve.core.errors import InputError
from aisolve.core.model import Structure

MAX_NON_H = 80


@dataclass
class CifEntry:
    path: Path
    compound_id: str  # normalised formula: data sets of one compound share it


def training_cifs(directory: str | Path) -> list[CifEntry]:
    """Entries of training-cifs/MANIFEST.tsv with H atoms, a space group and at most MAX_NON_H atoms."""
    directory = Path(directory)
    out = []
    with open(directory / "MANIFEST.tsv") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            try:
                n_non_h = int(row["n_nonH_asu"] or 0)
                sg = int(row["sg_number"] or 0)
            except ValueError:
                continue
            if sg == 0 or not (1 <= n_non_h <= MAX_NON_H):
                continue
            try:
                compound = hill_formula(parse_formula(row["formula"])) if row["formula"] else row["file"]
            except ValueError:
                compound = row["file"]
            out.append(CifEntry(directory / row["file"], "cif:" + compound.replace(" ", "")))
    return out


def load_ordered(entry: CifEntry) -> Structure | None:
    """The structure if it is ordered (every atom fully occupied) and has cell contents; else None."""
    try:
        st = read_cif(entry.path).structure
    except InputError:
        return None
    if st is None or not st.atoms or any(a.occupancy < 0.99 for a in st.atoms):
        return None
    try:
        st.symmetry  # noqa: B018  (cctbx refuses a cell that does not fit the space group)
    except AssertionError:
        return None
    if any(a.element not in st.cell_contents for a in st.atoms) or not st.cell_contents:
        st.cell_contents = st.model_formula_per_cell()
    return st
