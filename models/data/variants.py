"""Chemically plausible variants: halogen swaps, C=O -> C=S, metal swaps in real coordination sites."""
from __future__ import annotations

import copy

import numpy as np

from aisolve.core.geometry import bonds
from aisolve.core.model import Structure

BOND_TO_C = {"Cl": 1.74, "Br": 1.90, "I": 2.10, "O": 1.22, "S": 1.67}
HALOGENS = ("Cl", "Br", "I")
# Metals that take each other's places in similar coordination (radius and usual charge).
METAL_GROUPS = [("Mn", "Fe", "Co", "Ni", "Cu", "Zn"), ("Pd", "Pt"), ("Na", "K"), ("Mg", "Ca"),
                ("Al", "Ga"), ("Ag", "Au"), ("Cd", "Hg")]


def _move_along_bond(st: Structure, i: int, partner_xyz: np.ndarray, length: float) -> None:
    uc = st.unit_cell
    a = np.array(uc.orthogonalize(st.atoms[i].xyz))
    d = a - partner_xyz
    new = partner_xyz + d / np.linalg.norm(d) * length
    st.atoms[i].xyz = tuple(uc.fractionalize(tuple(new)))


def substitute(st: Structure, rng: np.random.Generator) -> tuple[Structure, str] | None:
    """One random substitution that keeps the chemistry plausible; None if none applies."""
    st = copy.deepcopy(st)
    xs = st.to_xray()
    table = bonds(xs, [a.element for a in st.atoms])
    uc = st.unit_cell
    options = []
    for i, a in enumerate(st.atoms):
        heavy = [c for c in table[i] if st.atoms[c.j].element not in ("H", "D")]
        if a.element in HALOGENS and len(heavy) == 1 and st.atoms[heavy[0].j].element == "C":
            options.append(("halogen", i, heavy[0]))
        elif a.element == "O" and len(table[i]) == 1 and st.atoms[table[i][0].j].element == "C" \
                and table[i][0].distance < 1.26:
            options.append(("thione", i, table[i][0]))
        elif any(a.element in g for g in METAL_GROUPS):
            options.append(("metal", i, None))
    if not options:
        return None
    kind, i, partner = options[int(rng.integers(len(options)))]
    old = st.atoms[i].element
    if kind == "halogen":
        new = str(rng.choice([h for h in HALOGENS if h != old]))
    elif kind == "thione":
        new = "S"
    else:
        group = next(g for g in METAL_GROUPS if old in g)
        new = str(rng.choice([m for m in group if m != old]))
    if partner is not None:
        _move_along_bond(st, i, np.array(uc.orthogonalize(partner.site)), BOND_TO_C[new])
    # every symmetry copy changes with it: the cell contents follow the model
    st.atoms[i].element = new
    st.atoms[i].label = new + st.atoms[i].label[len(old):]
    st.cell_contents = st.model_formula_per_cell()
    return st, f"{kind}:{old}->{new}"
