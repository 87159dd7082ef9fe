"""Pack molecules into the common space groups with a realistic density and no clashes.

Random placement at crystal density nearly always clashes, so molecules are packed by compression:
a loose cell of the right crystal system (60 A^3 per non-H atom) with randomly oriented and placed
molecules is shrunk axis by axis, each axis by bisection to the tightest scale at which no two atoms
of different molecules (or symmetry copies) come closer than contact limits that still allow
hydrogen bonds. Packings that stay looser than 24 A^3 per non-H atom are rejected.
"""
from __future__ import annotations

import itertools

import numpy as np
from cctbx import sgtbx, uctbx
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from aisolve.core.model import Atom, Structure

# Common small-molecule space groups and their rough share of the CSD.
SPACE_GROUPS = {
    "P 1 21/c 1": 0.36, "P -1": 0.22, "P 21 21 21": 0.1, "C 1 2/c 1": 0.08, "P 1 21 1": 0.06,
    "P b c a": 0.05, "P n a 21": 0.04, "C 1 c 1": 0.03, "P 1": 0.03, "P n m a": 0.03,
}
MIN_CONTACT = {("H", "H"): 1.9, ("H", "X"): 1.75, ("X", "X"): 2.75}  # X: any non-H atom
START_VOLUME, MAX_VOLUME = 60.0, 24.0  # A^3 per non-H atom


def _crystal_system(group: sgtbx.space_group) -> str:
    return str(group.crystal_system()).lower()


def random_cell(group: sgtbx.space_group, volume: float, rng: np.random.Generator) -> tuple[float, ...]:
    system = _crystal_system(group)
    ratios = np.exp(rng.uniform(np.log(0.55), np.log(1.8), size=3))
    al = be = ga = 90.0
    if system == "triclinic":
        al, be, ga = rng.uniform(75, 110, size=3)
    elif system == "monoclinic":
        be = rng.uniform(91, 118)
    cell = uctbx.unit_cell((*ratios, al, be, ga))
    scale = (volume / cell.volume()) ** (1 / 3)
    return (*(ratios * scale), al, be, ga)


class _Trial:
    """The fixed part of a packing (molecules, orientations, positions, symmetry) with a clash
    test for any cell: each bisection step only changes the cell, so nothing is rebuilt."""

    def __init__(self, molecules, placements, group: sgtbx.space_group):
        self.elements = [el for els, _ in molecules for el in els]
        # Cartesian offsets of each atom from its molecule's centre, and the centres (fractional)
        self.offsets = np.concatenate([xyz @ rot.T for (_, xyz), (rot, _) in zip(molecules, placements)])
        self.centres = np.concatenate([np.repeat(np.asarray(c, dtype=float)[None, :], len(els), axis=0)
                                       for (els, _), (_, c) in zip(molecules, placements)])
        self.molecule_of = np.repeat(np.arange(len(molecules)), [len(els) for els, _ in molecules])
        self.is_h = np.array([el in ("H", "D") for el in self.elements])
        ops = group.all_ops()
        assert ops[0].is_unit_mx()
        self.rot = np.array([op.r().as_double() for op in ops], dtype=float).reshape(-1, 3, 3)
        self.trans = np.array([op.t().as_double() for op in ops], dtype=float).reshape(-1, 3)

    def frac(self, uc: uctbx.unit_cell) -> np.ndarray:
        to_frac = np.array(uc.fractionalization_matrix()).reshape(3, 3)
        return np.einsum("ij,nj->ni", to_frac, self.offsets) + self.centres

    def clashes(self, cell) -> bool:
        """Any two atoms of different molecules or symmetry copies closer than MIN_CONTACT?

        All symmetry copies in the 125 surrounding cells that can reach the base copy go into one
        KD-tree (Cartesian); pairs are checked against the contact limit of their types. Pairs
        within the same copy of one molecule (same operator, same cell) are bonds, not contacts.
        An atom on or next to a special position meets its own image and so clashes too.
        """
        uc = uctbx.unit_cell(cell)
        frac = self.frac(uc)
        frac -= np.floor(frac.mean(axis=0))  # the base copy's centroid in the unit cell
        orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)
        # Every copy's centroid in the cell; a molecule can be longer than an edge, so +-2 cells.
        shifts = _SHIFTS
        n = len(frac)
        base = np.einsum("ij,nj->ni", orth, frac)
        centre = base.mean(axis=0)
        reach = 2 * np.sqrt(((base - centre) ** 2).sum(axis=1)).max() + MIN_CONTACT[("X", "X")]
        copies, copy_ids = [], []
        for k in range(len(self.rot)):
            moved = np.einsum("ij,nj->ni", self.rot[k], frac) + self.trans[k]
            moved -= np.floor(moved.mean(axis=0))
            centres = np.einsum("ij,sj->si", orth, moved.mean(axis=0) + shifts)
            near = np.flatnonzero(((centres - centre) ** 2).sum(axis=1) <= reach * reach)
            copies.append(np.einsum("ij,snj->sni", orth, moved[None, :, :] + shifts[near][:, None, :]).reshape(-1, 3))
            copy_ids.append(k * len(shifts) + near)
        cart = np.concatenate(copies)
        copy_of = np.repeat(np.concatenate(copy_ids), n)
        hits = cKDTree(cart).query_ball_point(base, r=MIN_CONTACT[("X", "X")], return_sorted=False)
        i = np.repeat(np.arange(n), [len(h) for h in hits])
        if not len(i):
            return False
        h = np.concatenate([np.asarray(x, dtype=np.int64) for x in hits])
        copy, j = copy_of[h], h % n
        d = np.sqrt(((cart[h] - base[i]) ** 2).sum(axis=1))
        same_copy = copy == _IDENTITY
        mol, is_h = self.molecule_of, self.is_h
        # pairs within one copy of one molecule are bonds; an atom with itself is no contact
        contact = ~(same_copy & (mol[i] == mol[j])) & ~(same_copy & (d < 1e-6))
        limit = np.where(is_h[i] & is_h[j], MIN_CONTACT[("H", "H")],
                         np.where(is_h[i] | is_h[j], MIN_CONTACT[("H", "X")], MIN_CONTACT[("X", "X")]))
        return bool(np.any(contact & (d < limit)))

    def structure(self, group, cell, title) -> Structure:
        frac = self.frac(uctbx.unit_cell(cell))
        atoms = [Atom(label=f"{el}{k + 1}", element=el, xyz=tuple(float(v) for v in xyz), uiso=0.03)
                 for k, (el, xyz) in enumerate(zip(self.elements, frac))]
        return Structure(cell=tuple(cell), space_group=group, title=title, atoms=atoms)


_SHIFTS = np.array(list(itertools.product(range(-2, 3), repeat=3)), dtype=float)
_IDENTITY = int(np.flatnonzero((_SHIFTS == 0).all(axis=1))[0])  # op 0, no shift


def _scaled(cell, axis: int, factor: float) -> tuple[float, ...]:
    out = list(cell)
    out[axis] *= factor
    return tuple(out)


def pack(molecules: list[tuple[list[str], np.ndarray]], space_group: str, rng: np.random.Generator,
         max_tries: int = 4, title: str = "packed") -> Structure | None:
    """Put the molecules (elements, centred Cartesian xyz) in one asymmetric unit of the group."""
    group = sgtbx.space_group_info(space_group).group()
    n_heavy = sum(1 for els, _ in molecules for e in els if e != "H")
    for _ in range(max_tries):
        cell = random_cell(group, n_heavy * group.order_z() * START_VOLUME, rng)
        placements = [(Rotation.random(random_state=int(rng.integers(2 ** 31))).as_matrix(),
                       rng.uniform(0, 1, size=3)) for _ in molecules]
        trial = _Trial(molecules, placements, group)
        if trial.clashes(cell):
            continue
        for _round in range(2):
            for axis in rng.permutation(3):
                lo, hi = 0.45, 1.0  # hi fits, lo assumed not to
                for _step in range(6):
                    mid = 0.5 * (lo + hi)
                    if trial.clashes(_scaled(cell, axis, mid)):
                        lo = mid
                    else:
                        hi = mid
                cell = _scaled(cell, axis, hi)
        if uctbx.unit_cell(cell).volume() / (n_heavy * group.order_z()) > MAX_VOLUME:
            continue
        best = trial.structure(group, cell, title)
        counts: dict[str, float] = {}
        for a in best.atoms:
            counts[a.element] = counts.get(a.element, 0.0) + group.order_z()
        best.cell_contents = counts
        best.z = float(group.order_z())
        return best
    return None
