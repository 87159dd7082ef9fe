"""Baseline atom typing: electron counts from refinement, cell contents, bond-count chemistry.

Every atom is first refined as carbon with a free occupancy: occupancy x 6 estimates its number of
electrons. With the cell contents, elements are handed out by rank (heaviest to the most
electron-rich atoms, in the expected numbers); a chemistry pass then swaps pairs whose bond counts
are impossible (an O with three bonds). Without contents, each atom takes the element whose
atomic number best fits its estimate under a prior of common elements.
"""
from __future__ import annotations

import math

from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.geometry import bonds
from aisolve.core.model import Atom
from aisolve.core.stages import TypingContext

# Prior of non-H elements in small-molecule crystal structures when the formula is unknown.
COMMON_PRIOR = {"C": 0.55, "O": 0.17, "N": 0.1, "F": 0.04, "S": 0.025, "Cl": 0.025, "P": 0.01,
                "Br": 0.01, "B": 0.005, "Si": 0.005, "I": 0.005}
RARE_PRIOR = 0.0005  # any other element
MAX_BONDS = {"O": 2, "N": 4, "F": 1, "Cl": 1, "Br": 1, "I": 1, "C": 4, "S": 6, "P": 6, "B": 4}
AMBIGUOUS_RATIO = 0.5  # flag atoms whose second-best element is at least half as likely


def expected_per_asu(contents: dict[str, float], order_z: int) -> dict[str, int]:
    counts = {}
    for el, n in contents.items():
        if el in ("H", "D") or n <= 0:
            continue
        counts[el] = max(1, int(round(n / order_z)))
    return counts


def _sigma(z: float) -> float:
    """Spread of the electron estimate around the true atomic number."""
    return max(0.9, 0.12 * z)


def element_probabilities(estimate: float, prior: dict[str, float]) -> dict[str, float]:
    weights = {}
    for el, p in prior.items():
        z = ATOMIC_NUMBER[el]
        weights[el] = p * math.exp(-0.5 * ((estimate - z) / _sigma(z)) ** 2) / _sigma(z)
    total = sum(weights.values()) or 1.0
    return {el: w / total for el, w in sorted(weights.items(), key=lambda kv: -kv[1]) if w / total > 1e-4}


class BaselineTyper:
    name = "baseline"

    def assign(self, atoms: list[Atom], context: TypingContext) -> list[Atom]:
        estimates = context.electron_estimates
        if estimates is None or len(estimates) != len(atoms):
            raise ValueError("the baseline typer needs one electron estimate per atom")
        order_z = context.symmetry.space_group().order_z()
        expected = expected_per_asu(context.contents, order_z)
        if expected:
            estimates = self._calibrated(estimates, expected)
            prior = {el: n / sum(expected.values()) for el, n in expected.items()}
            elements = self._by_rank(estimates, expected)
            elements = self._fix_bond_counts(atoms, elements, estimates, context, set(expected))
        else:
            estimates = self._calibrated_without_formula(estimates)
            prior = {el: COMMON_PRIOR.get(el, RARE_PRIOR) for el in ATOMIC_NUMBER
                     if el not in ("H", "D", "He", "Ne", "Ar", "Kr", "Xe", "Rn")}
            elements = [max(element_probabilities(e, prior).items(), key=lambda kv: kv[1])[0] for e in estimates]
        for atom, el, est in zip(atoms, elements, estimates):
            probs = element_probabilities(est, prior)
            probs.setdefault(el, 1e-4)
            atom.element = el
            atom.element_probabilities = probs
            atom.confidence = probs[el] / sum(probs.values())
        return atoms

    @staticmethod
    def _calibrated(estimates: list[float], expected: dict[str, int]) -> list[float]:
        """Scale so that the estimates add up to the expected electrons of the atoms found."""
        target = sorted((ATOMIC_NUMBER[el] for el, n in expected.items() for _ in range(n)), reverse=True)
        n = min(len(target), len(estimates))
        top = sorted(estimates, reverse=True)[:n]
        scale = sum(target[:n]) / max(sum(top), 1e-6)
        return [e * scale for e in estimates]

    @staticmethod
    def _calibrated_without_formula(estimates: list[float]) -> list[float]:
        """Without a formula the absolute scale is unknown: the median atom is taken to be carbon."""
        med = sorted(estimates)[len(estimates) // 2]
        return [e * 6.0 / max(med, 1e-6) for e in estimates]

    @staticmethod
    def _by_rank(estimates: list[float], expected: dict[str, int]) -> list[str]:
        order = sorted(range(len(estimates)), key=lambda i: -estimates[i])
        queue = [el for el in sorted(expected, key=lambda e: -ATOMIC_NUMBER[e]) for _ in range(expected[el])]
        lightest = min(expected, key=lambda e: ATOMIC_NUMBER[e])
        elements = [lightest] * len(estimates)
        for rank, i in enumerate(order):
            elements[i] = queue[rank] if rank < len(queue) else lightest
        return elements

    @staticmethod
    def _fix_bond_counts(atoms, elements, estimates, context, allowed: set[str]) -> list[str]:
        """Swap pairs of neighbouring-Z elements when one has more bonds than its element allows."""
        xs = _provisional_structure(atoms, elements, context)
        n_bonds = [len(row) for row in bonds(xs, elements)]
        for i, el in enumerate(elements):
            if n_bonds[i] <= MAX_BONDS.get(el, 8):
                continue
            # the lighter partner most likely to be mis-ranked: closest estimate, and able to hold fewer bonds
            candidates = [j for j, other in enumerate(elements)
                          if other != el and ATOMIC_NUMBER[other] < ATOMIC_NUMBER[el]
                          and n_bonds[j] <= MAX_BONDS.get(el, 8) and n_bonds[i] <= MAX_BONDS.get(other, 8)]
            if candidates:
                j = min(candidates, key=lambda j: abs(estimates[j] - estimates[i]))
                elements[i], elements[j] = elements[j], elements[i]
        return elements


def _provisional_structure(atoms: list[Atom], elements: list[str], context: TypingContext):
    from cctbx import xray
    xs = xray.structure(crystal_symmetry=context.symmetry)
    for a, el in zip(atoms, elements):
        xs.add_scatterer(xray.scatterer(label=a.label, site=a.xyz, u=0.03, scattering_type=el))
    return xs
