"""Element exchanges that the displacement parameters ask for.

An atom given too few electrons refines to a tiny U (its density is more than its element can
explain), one given too many to a huge U. When a count-honouring typing puts a heavy element on a
spurious or disordered site, both happen at once: simulated 04369a (a W complex with a disordered
CF3) had a real S typed F (Uiso 0.0001, the lower bound) and the third S of the contents on a half-
occupied F site (Uiso 0.36). Exchanging the two elements keeps the contents' counts; it is kept
when the model then refines to a clearly better wR2.
"""
from __future__ import annotations

import numpy as np
from cctbx import miller, xray

from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.model import Atom
from aisolve.core.refine import RefinementDiverged, RefinementResult, refine
from aisolve.core.stages import confidence_given_atom

U_LOW_FACTOR = 0.4  # below this times the median U an atom has more electrons than its element
U_HIGH_FACTOR = 2.0  # above this times the median U, fewer
MAX_PAIRS = 12
EXCHANGE_CYCLES = 4
EXCHANGE_GAIN = 0.02  # relative wR2 drop an exchange must bring to be kept (as for the C/N/O swaps)


def exchange_pairs(xs: xray.structure) -> list[tuple[int, int]]:
    """(i, j): atom i's U says it is heavier than its element, atom j's that it is lighter, and j's
    element is the heavier one. The most extreme pairs first."""
    uc = xs.unit_cell()
    scatterers = xs.scatterers()
    u = np.array([sc.u_iso_or_equiv(uc) for sc in scatterers])
    median = float(np.median(u))
    low = [i for i in np.argsort(u) if u[i] < U_LOW_FACTOR * median]
    high = [j for j in np.argsort(-u) if u[j] > U_HIGH_FACTOR * median]
    pairs = [(int(i), int(j)) for i in low for j in high
             if ATOMIC_NUMBER[scatterers[j].scattering_type] > ATOMIC_NUMBER[scatterers[i].scattering_type]]
    pairs.sort(key=lambda p: u[p[0]] / u[p[1]])
    return pairs[:MAX_PAIRS]


def exchanged(xs: xray.structure, i: int, j: int) -> xray.structure:
    """A copy of xs with the elements of atoms i and j exchanged."""
    out = xs.deep_copy_scatterers()
    a, b = out.scatterers()[i], out.scatterers()[j]
    a.scattering_type, b.scattering_type = b.scattering_type, a.scattering_type
    out.discard_scattering_type_registry()
    return out


def follow_exchange(atoms: list[Atom], xs: xray.structure, i: int, j: int) -> None:
    """Atoms i and j take their elements from the exchanged model xs, their confidence recomputed."""
    for k in (i, j):
        atoms[k].element = xs.scatterers()[k].scattering_type
        if atoms[k].element_probabilities:
            atoms[k].confidence = confidence_given_atom(atoms[k].element_probabilities, atoms[k].element)


def exchange_by_displacement(xs: xray.structure, result: RefinementResult, atoms: list[Atom],
                             fo_sq: miller.array, notes: list[str]) -> tuple[xray.structure, RefinementResult]:
    """The refined model `xs` (its refinement `result`) with the exchange that lowers wR2 most,
    repeated while one helps; `atoms` (aligned with xs) follow."""
    while True:
        best = None
        for i, j in exchange_pairs(xs):
            trial = exchanged(xs, i, j)
            try:
                refined = refine(trial, fo_sq, EXCHANGE_CYCLES)
            except RefinementDiverged:
                continue
            if best is None or refined.figures.wr2 < best[0].figures.wr2:
                best = (refined, trial, i, j)
        if best is None or best[0].figures.wr2 > (1 - EXCHANGE_GAIN) * result.figures.wr2:
            return xs, result
        refined, xs, i, j = best
        follow_exchange(atoms, xs, i, j)
        notes.append(f"elements of atoms {i + 1} and {j + 1} exchanged ({atoms[j].element}/{atoms[i].element} -> "
                     f"{atoms[i].element}/{atoms[j].element}) as their displacement parameters asked: wR2 "
                     f"{result.figures.wr2:.4f} -> {refined.figures.wr2:.4f}")
        result = refined
