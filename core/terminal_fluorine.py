"""Terminal fluorine recognised from geometry: the F of CF3, CF2 and BF4- groups.

CF3 groups are very often rotationally disordered; refined as single sites, their F smear into
large, weak peaks whose electron counts read as C or O (DSR's p21n_cf3: six F typed C and O, each
then given a riding H). Their geometry is distinctive: a light centre with four or more bonded
peaks, two or more of them terminal at 1.20-1.38 A, on a cone around the centre's other bonds.
In the 1,322 training structures (published models, non-H atoms), 146 of the 150 terminal atoms
of that shape are F; the others are methyls of a badly disordered tert-butyl and an O of a
disorder group. Carboxylates, the nearest look-alike, have C-C-O angles of 117-120 deg (hence
the angle bound), gem-diols C-O bonds of 1.38-1.41 A (hence the distance bound). Typing uses the
shape only where F is a candidate (core.typing_baseline, models.element_typer).
"""
from __future__ import annotations

import numpy as np

from aisolve.core.geometry import Contact

BOND_RANGE = (0.9, 1.95)  # A: what counts as a bond between peaks of unknown element
FLUORINE_BOND = (1.20, 1.38)  # A: C-F and B-F, shortened by libration and disorder
# A: the other F of a group with two at FLUORINE_BOND (disorder spreads them; C-CH3 is 1.50+)
GROUP_BOND_MAX = 1.46
# deg: between an F and the centre's other bonds (tetrahedral 109.5; C-C-O of carboxylates 117-120)
MAX_AXIS_ANGLE = 116.0
MAX_TERMINAL_ANGLE = 118.0  # deg: between two F of a centre with no other bond


def fluorine_like_terminals(table: list[list[Contact]], sites_cart: np.ndarray, unit_cell,
                            light_centre: list[bool]) -> set[int]:
    """Indices of terminal atoms shaped like the F of a CF3/CF2/BF4 group.

    `table`: core.geometry.contacts of the atoms (cutoff at least BOND_RANGE[1]); `sites_cart`:
    their Cartesian sites; `light_centre[i]`: atom i is light enough (B, C, N) to be the centre.
    """
    bonded = [[c for c in row if BOND_RANGE[0] < c.distance < BOND_RANGE[1]] for row in table]
    found: set[int] = set()
    for i, row in enumerate(bonded):
        if len(row) < 4 or not light_centre[i]:
            continue
        substituents = {c.j for c in row}
        # terminal: bonded to the centre only, apart from its neighbours on the same centre (the F
        # of a disordered CF3 come within 1.9 A of each other, and of extra peaks between them)
        terminal = [c for c in row if FLUORINE_BOND[0] <= c.distance <= GROUP_BOND_MAX
                    and all(d.j == i or d.j in substituents for d in bonded[c.j])]
        short = [c for c in terminal if c.distance <= FLUORINE_BOND[1]]
        if len(short) < 2:
            continue
        bond = {id(c): np.asarray(unit_cell.orthogonalize(c.site)) - sites_cart[i] for c in row}
        in_group = {id(c) for c in terminal}
        others = [c for c in row if id(c) not in in_group]
        if others:  # a CF3 or CF2: the F on a cone around the bond(s) to the rest of the molecule
            shaped = all(_angle(bond[id(t)], bond[id(o)]) <= MAX_AXIS_ANGLE for t in short for o in others)
        else:  # BF4-, CF4: tetrahedral angles between the F
            shaped = all(_angle(bond[id(a)], bond[id(b)]) <= MAX_TERMINAL_ANGLE
                         for k, a in enumerate(short) for b in short[k + 1:])
        if shaped:
            found.update(c.j for c in terminal)
    return found


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(min(1.0, max(-1.0, cos)))))
