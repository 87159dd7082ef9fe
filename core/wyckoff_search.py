"""Direct search over Wyckoff positions for structures of a few atoms (PbFCl, MoSe2, Au3Cu).

Charge flipping and peak picking are built for molecules: with one or two atoms in the asymmetric
unit on special positions the map has a handful of peaks, and a Cd/I swap or a missed O is common
(docs/BENCHMARKS.md). When the cell contents are integer counts per cell, every arrangement of the
elements over the space group's Wyckoff positions whose multiplicities add up to those counts can be
tried: free coordinates on a grid, scored by R on |F| against the data, the best few refined.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

import numpy as np
from cctbx import crystal, miller, sgtbx, xray
from cctbx.eltbx import xray_scattering
from scitbx.array_family import flex

from aisolve.core.geometry import structure_from_sites
from aisolve.core.refine import RefinementDiverged, refine, set_refinement_flags
from aisolve.core.stages import NO_ATOM

MAX_SITES = 4  # independent sites in an arrangement
MAX_FREE = 2  # free coordinates over all sites (grid points grow as (cell / GRID_STEP) ** MAX_FREE)
GRID_STEP = 0.25  # A, spacing of the free-coordinate grid
MIN_CONTACT = 1.1  # A, closest approach of two atoms (shorter: the arrangement is impossible)
MAX_REFLECTIONS = 600  # the lowest-resolution ones score; tiny cells rarely have more
MAX_ARRANGEMENTS = 5000
MAX_GRID = 250_000  # grid points of one position
TIME_BUDGET = 30.0  # s for scoring; what is scored by then is ranked
# Candidates weigh exp(-(R1 - best R1) / R1_SCALE) in the per-site element probabilities: on
# simulated matlockite the right arrangement refined to 0.024, the next distinct one to 0.077.
R1_SCALE = 0.01


@dataclass(frozen=True)
class Position:
    letter: str
    multiplicity: int
    n_free: int
    grid: np.ndarray | None  # (G, 3) sites covering the position (G = 1 without free coordinates)

    def varies(self, axis: int) -> bool:
        return self.grid is not None and bool(np.ptp(self.grid[:, axis]) > 0)


@dataclass
class Candidate:
    elements: list[str]
    sites: list[tuple[float, float, float]]
    letters: list[str]
    r_grid: float  # R on |F| at the best grid point, before refinement (a swap: its source's)


def integer_counts(contents: dict[str, float], tolerance: float = 0.05) -> dict[str, int] | None:
    """Per-cell counts of the non-H elements if all are whole numbers, else None."""
    out = {}
    for el, n in contents.items():
        if el in ("H", "D") or n <= 0:
            continue
        if abs(n - round(n)) > tolerance:
            return None
        out[el] = int(round(n))
    return out or None


def positions(sym: crystal.symmetry, step: float = GRID_STEP) -> list[Position]:
    """The Wyckoff positions of the space group, each with a grid over its free coordinates; a
    position with more free coordinates than a search can use gets no grid (None)."""
    sgi = sym.space_group_info()
    table = sgi.wyckoff_table()
    uc, group = sym.unit_cell(), sgi.group()
    n_grid = max(4, int(math.ceil(max(uc.parameters()[:3]) / step)))
    usable = MAX_FREE + len(polar_axes(sym))
    out = []
    for i in range(table.size()):
        wp = table.position(i)
        site = wp.special_op() * (0.1234, 0.2345, 0.3456)
        constraints = sgtbx.site_symmetry(uc, group, site, 1e-3, True).site_constraints()
        k = constraints.n_independent_params()
        grid = None
        if k <= usable and n_grid ** k <= MAX_GRID:
            # the free coordinates map linearly onto the site
            origin = np.array(constraints.all_params(tuple([0.0] * k)))
            axes = np.array([constraints.all_params(tuple(np.eye(k)[j])) for j in range(k)]).reshape(k, 3) - origin
            free = np.array(list(itertools.product(np.arange(n_grid) / n_grid, repeat=k))) if k else np.zeros((1, 0))
            grid = origin + free @ axes
        out.append(Position(wp.letter(), wp.multiplicity(), k, grid))
    return out


def polar_axes(sym: crystal.symmetry) -> list[int]:
    """Axes along which the origin is free (P6_3mc: c): one coordinate along each can be fixed."""
    seminvariants = sgtbx.structure_seminvariants(sym.space_group())
    return [list(vm.v).index(1) for vm in seminvariants.vectors_and_moduli()
            if vm.m == 0 and sorted(vm.v) == [0, 0, 1]]


def origin_fixed(arrangement: list[tuple[str, int]], table: list[Position], polar: list[int]) -> list[np.ndarray]:
    """Per site its grid, the first site that moves along each polar axis held at one value there."""
    grids = [table[i].grid for _, i in arrangement]
    for axis in polar:
        for k, g in enumerate(grids):
            if np.ptp(g[:, axis]) > 0:
                grids[k] = g[g[:, axis] == g[0, axis]]
                break
    return grids


def arrangements(counts: dict[str, int], table: list[Position], max_sites: int = MAX_SITES,
                 max_free: int = MAX_FREE, polar: list[int] = ()) -> list[list[tuple[str, int]]]:
    """Every way to put the counts on Wyckoff positions: lists of (element, position index).
    A position without free coordinates holds one atom of one element; others may repeat. Free
    coordinates along a polar axis (`polar`) count one fewer: the origin fixes one."""
    usable = [i for i, p in enumerate(table) if p.grid is not None]

    def for_element(n: int, start: int, sites_left: int) -> list[list[int]]:
        if n == 0:
            return [[]]
        if sites_left == 0:
            return []
        found = []
        for k in range(start, len(usable)):
            i = usable[k]
            if table[i].multiplicity <= n:
                nxt = k if table[i].n_free else k + 1
                found += [[i] + rest for rest in for_element(n - table[i].multiplicity, nxt, sites_left - 1)]
        return found

    elements = sorted(counts)
    out: list[list[tuple[str, int]]] = []

    def place(e: int, acc: list[tuple[str, int]]) -> None:
        if len(out) >= MAX_ARRANGEMENTS:
            return
        n_free = sum(table[i].n_free for _, i in acc)
        if e == len(elements):
            n_free -= sum(any(table[i].varies(axis) for _, i in acc) for axis in polar)
            if n_free <= max_free:
                out.append(acc)
            return
        used = {i for _, i in acc if table[i].n_free == 0}
        for combo in for_element(counts[elements[e]], 0, max_sites - len(acc)):
            fixed = [i for i in combo if table[i].n_free == 0]
            if used.isdisjoint(fixed) and n_free + sum(table[i].n_free for i in combo) <= max_free + len(polar):
                place(e + 1, acc + [(elements[e], i) for i in combo])

    place(0, [])
    return out


class _Scorer:
    """R on |F| of arrangements against the observed amplitudes (one overall scale and Wilson B)."""

    def __init__(self, sym: crystal.symmetry, f_obs: miller.array, wilson_b: float):
        f_obs = f_obs.select(f_obs.data() > 0) if f_obs.size() else f_obs
        if f_obs.size() > MAX_REFLECTIONS:
            d = f_obs.d_spacings().data()
            f_obs = f_obs.select(d >= sorted(d, reverse=True)[MAX_REFLECTIONS - 1])
        self.f_obs = np.array(f_obs.data())
        hkl = np.array(f_obs.indices(), dtype=float)
        ops = sym.space_group().all_ops()
        rot = np.array([np.array(op.r().as_double()).reshape(3, 3) for op in ops])
        trans = np.array([op.t().as_double() for op in ops])
        self.h_rot = np.einsum("nc,ocd->ond", hkl, rot)  # (ops, refl, 3): h.R
        self.h_trans = np.einsum("nc,oc->on", hkl, trans)
        self.ops = (rot, trans)
        self.d_star_sq = np.array(f_obs.d_star_sq().data())
        self.b = max(wilson_b, 0.0)
        self._f0: dict[str, np.ndarray] = {}
        self.orth = np.array(sym.unit_cell().orthogonalization_matrix()).reshape(3, 3)

    def form_factor(self, el: str) -> np.ndarray:
        if el not in self._f0:
            g = xray_scattering.wk1995(el, True).fetch()
            f0 = np.array(g.at_d_star_sq(flex.double(self.d_star_sq)))
            self._f0[el] = f0 * np.exp(-self.b * self.d_star_sq / 4)
        return self._f0[el]

    def orbit_sums(self, grid: np.ndarray, multiplicity: int) -> np.ndarray:
        """(G, refl) sum over the distinct images of each grid point of exp(2 pi i h.x)."""
        n_ops = self.h_rot.shape[0]
        out = np.empty((len(grid), self.h_rot.shape[1]), dtype=complex)
        block = max(1, 4_000_000 // (n_ops * self.h_rot.shape[1]))
        for s in range(0, len(grid), block):
            phase = np.einsum("ond,gd->gon", self.h_rot, grid[s:s + block]) + self.h_trans[None]
            out[s:s + block] = np.exp(2j * np.pi * phase).sum(axis=1)
        return out * (multiplicity / n_ops)

    def images(self, grid: np.ndarray) -> np.ndarray:
        rot, trans = self.ops
        return np.einsum("ocd,gd->goc", rot, grid) + trans[None]  # (G, ops, 3)

    def shortest(self, a: np.ndarray, b_images: np.ndarray) -> np.ndarray:
        """(Ga, Gb) shortest distance from points a to any image of points b (nearest lattice copy)."""
        return self.lengths(b_images[None, :, :, :] - a[:, None, None, :]).min(axis=2)

    def lengths(self, diff: np.ndarray) -> np.ndarray:
        """Lengths (A) of fractional differences (..., 3), each to its nearest lattice copy."""
        diff = diff - np.round(diff)
        return np.sqrt((np.einsum("cd,...d->...c", self.orth, diff) ** 2).sum(axis=-1))

    def clean_points(self, grid: np.ndarray, multiplicity: int) -> np.ndarray:
        """Grid points whose orbit has the position's multiplicity and no two images in contact."""
        imgs = self.images(grid)
        dist = self.lengths(imgs - grid[:, None, :])
        n_ops = imgs.shape[1]
        same = (dist < 0.05).sum(axis=1) == n_ops // multiplicity
        apart = ((dist < 0.05) | (dist >= MIN_CONTACT)).all(axis=1)
        return same & apart

    def best(self, arrangement: list[tuple[str, int]], table: list[Position],
             polar: list[int] = ()) -> tuple[float, list] | None:
        """Lowest R over the arrangement's grid and the sites that give it; None if nothing fits."""
        grids, sums = [], []
        for (el, i), grid in zip(arrangement, origin_fixed(arrangement, table, polar)):
            g = grid[self.clean_points(grid, table[i].multiplicity)]
            if not len(g):
                return None
            grids.append(g)
            sums.append(self.orbit_sums(g, table[i].multiplicity) * self.form_factor(el)[None])
        shape = [len(g) for g in grids]
        if math.prod(shape) > 200_000:
            return None
        valid = np.ones(shape, dtype=bool)
        for s, t in itertools.combinations(range(len(grids)), 2):
            d = self.shortest(grids[s], self.images(grids[t])) >= MIN_CONTACT
            idx = [np.newaxis] * len(grids)
            idx[s], idx[t] = slice(None), slice(None)
            valid &= d[tuple(idx)]
        if not valid.any():
            return None
        total = 0
        for k, sm in enumerate(sums):
            idx = [np.newaxis] * len(grids) + [slice(None)]
            idx[k] = slice(None)
            total = total + sm[tuple(idx)]
        r = _r_factor(self.f_obs, np.abs(total).reshape(-1, total.shape[-1]))
        r[~valid.reshape(-1)] = np.inf
        j = int(np.argmin(r))
        point = np.unravel_index(j, shape)
        return float(r[j]), [tuple(float(v) for v in grids[s][point[s]]) for s in range(len(grids))]


def search(sym: crystal.symmetry, counts: dict[str, int], f_obs: miller.array, wilson_b: float,
           keep: int = 6) -> list[Candidate]:
    """The `keep` best arrangements by R on |F| at their best grid point, best first."""
    table = positions(sym)
    polar = polar_axes(sym)
    options = arrangements(counts, table, polar=polar)
    if not options:
        return []
    scorer = _Scorer(sym, f_obs, wilson_b)
    found: list[Candidate] = []
    start = time.monotonic()
    for arrangement in options:
        if time.monotonic() - start > TIME_BUDGET:
            break
        best = scorer.best(arrangement, table, polar)
        if best is not None:
            found.append(Candidate([el for el, _ in arrangement], best[1],
                                   [table[i].letter for _, i in arrangement], best[0]))
    found.sort(key=lambda c: c.r_grid)
    return found[:keep]


def as_structure(sym: crystal.symmetry, candidate: Candidate, u_iso: float) -> xray.structure:
    return structure_from_sites(sym, [tuple(v % 1.0 for v in site) for site in candidate.sites], candidate.elements, u_iso)


@dataclass
class Refined:
    candidate: Candidate
    xs: xray.structure
    r1: float


def refined_candidates(sym: crystal.symmetry, counts: dict[str, int], f_obs: miller.array,
                       fo_sq: miller.array, wilson_b: float, u_iso: float) -> list[Refined]:
    """The best arrangements refined isotropically, best R1 first; of those that give the same
    amplitudes (the same structure from another origin or hand) only the best."""
    out: list[tuple[Refined, np.ndarray]] = []
    for found in search(sym, counts, f_obs, wilson_b):
        for c in [found] + element_swaps(found, sym):
            xs = as_structure(sym, c, u_iso)
            set_refinement_flags(xs, aniso=False)
            try:
                r1 = refine(xs, fo_sq, 8).figures.r1
            except RefinementDiverged:
                continue
            if not math.isfinite(r1):
                continue
            amp = np.abs(np.array(fo_sq.structure_factors_from_scatterers(xs, algorithm="direct").f_calc().data()))
            if not any(_r_factor(amp, seen) < SAME_AMPLITUDES for _, seen in out):
                out.append((Refined(c, xs, r1), amp))
    return sorted((o for o, _ in out), key=lambda o: o.r1)


def element_swaps(candidate: Candidate, sym: crystal.symmetry) -> list[Candidate]:
    """The candidate with the elements of two sites of equal multiplicity exchanged, for every such
    pair of different elements: the counts stay, and the grid cannot tell elements a few electrons
    apart (simulated 4H-CdI2: Cd and I on the two b sites the wrong way round refined to R1 0.041,
    swapped to 0.031)."""
    mult = [sgtbx.site_symmetry(sym.unit_cell(), sym.space_group(), site).multiplicity()
            for site in candidate.sites]
    out = []
    for i, j in itertools.combinations(range(len(candidate.sites)), 2):
        if candidate.elements[i] != candidate.elements[j] and mult[i] == mult[j]:
            elements = list(candidate.elements)
            elements[i], elements[j] = elements[j], elements[i]
            out.append(replace(candidate, elements=elements))
    return out


SAME_AMPLITUDES = 0.02  # R between two models' |F| below which they are one structure


def _r_factor(observed: np.ndarray, calc: np.ndarray):
    """R of `calc` against `observed` amplitudes with a least-squares scale: a float for one
    model (1-D), an array for one model per row (2-D)."""
    rows = np.atleast_2d(calc)
    k = (rows @ observed) / np.maximum((rows ** 2).sum(axis=1), 1e-12)
    r = np.abs(observed[None] - k[:, None] * rows).sum(axis=1) / max(observed.sum(), 1e-12)
    return r if calc.ndim == 2 else float(r[0])


def site_probabilities(ranked: list[Refined], tolerance: float = 0.5) -> list[dict[str, float]]:
    """Per site of the best candidate, its element over the candidates, each weighted by its R1
    (R1_SCALE); a candidate with no atom within `tolerance` A of the site votes NO_ATOM."""
    best = ranked[0]
    weights = [math.exp(-(o.r1 - best.r1) / R1_SCALE) for o in ranked]
    orbits = [[(sgtbx.sym_equiv_sites(o.xs.unit_cell(), o.xs.space_group(), sc.site), sc.scattering_type)
               for sc in o.xs.scatterers()] for o in ranked]
    out = []
    for sc in best.xs.scatterers():
        votes: dict[str, float] = {}
        for candidate_orbits, w in zip(orbits, weights):
            el = next((el for equiv, el in candidate_orbits
                       if sgtbx.min_sym_equiv_distance_info(equiv, sc.site).dist() < tolerance), NO_ATOM)
            votes[el] = votes.get(el, 0.0) + w
        total = sum(votes.values())
        out.append({el: v / total for el, v in votes.items()})
    return out
