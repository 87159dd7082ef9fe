"""Baseline atom typing: electron counts from refinement, cell contents, bond-count chemistry.

Every atom is first refined with a free occupancy: occupancy x Z estimates its number of
electrons. Each (atom, element) pair is scored by how well Z fits that estimate and by how likely
the element is to have the atom's number of short covalent bonds (an O with three bonds is
implausible). With the cell contents, one global assignment (Hungarian) maximises the total score
while honouring the expected count of each element; without them, each atom takes its best element
under a prior of common elements.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aisolve.core.contents import MIXED_SITE_TOLERANCE, site_sharing
from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.geometry import contacts, covalent_radius, structure_from_sites
from aisolve.core.model import Atom
from aisolve.core.stages import TypingContext
from aisolve.core.terminal_fluorine import fluorine_like_terminals

# Prior of non-H elements in small-molecule crystal structures when the formula is unknown.
COMMON_PRIOR = {"C": 0.55, "O": 0.17, "N": 0.1, "F": 0.04, "S": 0.025, "Cl": 0.025, "P": 0.01,
                "Br": 0.01, "B": 0.005, "Si": 0.005, "I": 0.005}
RARE_PRIOR = 0.0005  # any other element


def expected_per_asu(contents: dict[str, float], order_z: int) -> dict[str, int]:
    """Whole atoms per asymmetric unit, for counting how many atoms to look for."""
    return {el: max(1, int(round(n))) for el, n in expected_fraction_per_asu(contents, order_z).items()}


def expected_site_count(contents: dict[str, float], order_z: int) -> int:
    """Sites of non-H atoms per asymmetric unit, for how many atoms to look for: whole atoms per
    element (expected_per_asu), except that elements with fractional counts per cell share their
    sites and are counted together. Columbite (Fe,Mn)(Nb,Ta)2O6 in Pbcn (9003733: Fe3.16 Mn0.84
    Nb7.60 Ta0.40 O24 per cell) has two metal sites, not one per metal: 5 sites where the
    per-element count said 7."""
    fractions = expected_fraction_per_asu(contents, order_z)
    shared = site_sharing(contents)
    whole = sum(expected_per_asu({el: n for el, n in contents.items() if el not in shared}, order_z).values())
    if not shared:
        return whole
    return whole + max(1, math.ceil(sum(fractions[el] for el in shared) - MIXED_SITE_TOLERANCE))


def asu_weights(symmetry, sites) -> list[float]:
    """How much each site counts towards the asymmetric unit: 1 on a general position, 1/(site
    order) on a special one (the weights of the count-honouring assignment)."""
    order_z = symmetry.space_group().order_z()
    sps = symmetry.special_position_settings(min_distance_sym_equiv=0.5)
    return [sps.site_symmetry(tuple(float(v) for v in s)).multiplicity() / order_z for s in sites]


def expected_fraction_per_asu(contents: dict[str, float], order_z: int) -> dict[str, float]:
    """Non-H atoms of each element per asymmetric unit (atoms on special positions count 1/order)."""
    return {el: n / order_z for el, n in contents.items() if el not in ("H", "D") and n > 0}


def _sigma(z: float) -> float:
    """Spread of the electron estimate around the true atomic number."""
    return max(0.9, 0.12 * z)


# P(number of short covalent bonds | element) for the light elements; others are flat.
BOND_COUNT_PRIOR = {
    "C": {0: 0.01, 1: 0.12, 2: 0.27, 3: 0.4, 4: 0.2},
    "N": {0: 0.01, 1: 0.15, 2: 0.38, 3: 0.4, 4: 0.06},
    "O": {0: 0.08, 1: 0.55, 2: 0.36, 3: 0.01},
    "F": {0: 0.08, 1: 0.9, 2: 0.02}, "Cl": {0: 0.3, 1: 0.68, 2: 0.02}, "Br": {0: 0.3, 1: 0.68, 2: 0.02},
    "I": {0: 0.3, 1: 0.6, 2: 0.1}, "B": {3: 0.4, 4: 0.6},
    "P": {1: 0.05, 2: 0.05, 3: 0.35, 4: 0.5, 5: 0.03, 6: 0.02}, "S": {1: 0.15, 2: 0.4, 3: 0.15, 4: 0.3},
}
LIGAND_METAL = (1.8, 2.6)  # A: metal-ligand contact distances
# A terminal atom shaped like the F of a CF3 group (core.terminal_fluorine) gains this much log-
# likelihood as F: enough to outweigh the low electron count of a smeared, disordered F (and the
# network's reading of its weak peak), not enough to break the contents' counts.
FLUORINE_SHAPE_BONUS = 6.0
LIGHT_CENTRE_MAX_ELECTRONS = 9.5  # the centre of such a group is B, C or N, not S or P
METAL_CONTACT_BONUS = {"N": 0.6, "O": 0.6, "S": 0.6, "P": 0.6, "Cl": 0.6, "Br": 0.6, "I": 0.6, "C": -0.6}


@dataclass
class Environment:
    """An atom's surroundings, measured once: contacts (distance, index) up to 2.6 A."""
    contacts: list[tuple[float, int]]

    def n_bonds(self, element: str) -> int:
        limit = covalent_radius(element) + covalent_radius("C") + 0.35
        return sum(1 for d, _ in self.contacts if 0.9 < d < limit)

    def shortest(self) -> float | None:
        return min((d for d, _ in self.contacts if d > 0.9), default=None)


def _log_likelihood(estimate: float, element: str, env: Environment, metal_contact: bool) -> float:
    z = ATOMIC_NUMBER[element]
    ll = -0.5 * ((estimate - z) / _sigma(z)) ** 2 - math.log(_sigma(z))
    n_bonds = env.n_bonds(element)
    prior = BOND_COUNT_PRIOR.get(element)
    if prior is not None:
        ll += math.log(prior.get(min(n_bonds, max(prior)), 0.005) + 1e-3)
    shortest = env.shortest()
    if n_bonds == 1 and shortest is not None and shortest < 1.26 and element in ("C", "N", "O"):
        # a terminal atom with a double/triple bond: C=O and C#N are common, terminal C=C/C#C rare
        ll += {"O": 0.7, "N": 0.3, "C": -0.7}[element]
    if metal_contact:
        ll += METAL_CONTACT_BONUS.get(element, 0.0)
    return ll


class BaselineTyper:
    name = "baseline"

    def assign(self, atoms: list[Atom], context: TypingContext) -> list[Atom]:
        table = self.log_likelihoods(atoms, context)
        order_z = context.symmetry.space_group().order_z()
        expected = expected_per_asu(context.contents, order_z)
        if expected:
            weights = asu_weights(context.symmetry, [a.xyz for a in atoms])
            elements = constrained_assignment(table, expected_fraction_per_asu(context.contents, order_z),
                                              weights, penalty_scale=count_penalty_scale(order_z, context.z))
        else:
            prior = {el: math.log(COMMON_PRIOR.get(el, RARE_PRIOR)) for el in table[0]} if table else {}
            elements = [max(row, key=lambda el: row[el] + prior[el]) for row in table]
            table = [{el: row[el] + prior[el] for el in row} for row in table]
        for atom, el, row in zip(atoms, elements, table):
            probs = _softmax(row)
            atom.element = el
            atom.element_probabilities = {k: v for k, v in sorted(probs.items(), key=lambda kv: -kv[1])
                                          if v > 1e-4 or k == el}
            atom.confidence = probs[el]
        return atoms

    def log_likelihoods(self, atoms: list[Atom], context: TypingContext) -> list[dict[str, float]]:
        """Per atom, the log-likelihood of each candidate element given its electron estimate and
        its bonding environment (candidates: the contents' elements, else the context's candidate
        elements, else all but H and noble gases)."""
        return self.likelihoods_and_fluorine(atoms, context)[0]

    def likelihoods_and_fluorine(self, atoms: list[Atom], context: TypingContext
                                 ) -> tuple[list[dict[str, float]], set[int]]:
        """log_likelihoods, and the atoms shaped like the F of a CF3 group (core.terminal_fluorine)
        where F is a candidate: those got FLUORINE_SHAPE_BONUS."""
        estimates, candidates, xs, table = self._readings(atoms, context)
        envs = [Environment([(c.distance, c.j) for c in row]) for row in table]
        # metals: atoms whose estimate says Z >= 20 (a provisional, count-free reading)
        metal = [e >= 19.5 and _is_metal_like(e) for e in estimates]
        near_metal = [any(metal[j] and LIGAND_METAL[0] < d < LIGAND_METAL[1] for d, j in env.contacts)
                      and not metal[i] for i, env in enumerate(envs)]
        fluorine = set()
        if "F" in candidates:
            fluorine = fluorine_like_terminals(table, np.array(xs.sites_cart()), xs.unit_cell(),
                                               [e < LIGHT_CENTRE_MAX_ELECTRONS for e in estimates])
        scores = [{el: _log_likelihood(est, el, env, nm) + (FLUORINE_SHAPE_BONUS if el == "F" and i in fluorine else 0.0)
                   for el in candidates}
                  for i, (est, env, nm) in enumerate(zip(estimates, envs, near_metal))]
        return scores, fluorine

    def _readings(self, atoms: list[Atom], context: TypingContext):
        """Calibrated electron estimates, candidate elements, the atoms as a structure, their contacts."""
        estimates = context.electron_estimates
        if estimates is None or len(estimates) != len(atoms):
            raise ValueError("the baseline typer needs one electron estimate per atom")
        expected = expected_per_asu(context.contents, context.symmetry.space_group().order_z())
        if expected:
            estimates = self._calibrated(estimates, expected)
            candidates = sorted(expected, key=lambda e: -ATOMIC_NUMBER[e])
        else:
            estimates = self._calibrated_without_formula(estimates)
            candidates = list(context.candidate_elements) or [el for el in ATOMIC_NUMBER if el not in NOBLE_AND_H]
        xs = structure_from_sites(context.symmetry, [a.xyz for a in atoms], ["C"] * len(atoms))
        return estimates, candidates, xs, contacts(xs, cutoff=LIGAND_METAL[1])

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


NOBLE_AND_H = ("H", "D", "He", "Ne", "Ar", "Kr", "Xe", "Rn")


def _softmax(row: dict[str, float]) -> dict[str, float]:
    top = max(row.values())
    w = {el: math.exp(v - top) for el, v in row.items()}
    total = sum(w.values())
    return {el: v / total for el, v in w.items()}


COUNT_SLACK_PENALTY = 6.0  # log-likelihood units per atom of deviation from the expected counts


def count_penalty_scale(order_z: int, z: float | None) -> float:
    """How many formula-unit atoms one asymmetric-unit atom stands for, at least 1: where the
    asymmetric unit holds part of a formula unit (Z' < 1: urea in P-42_1m holds a quarter), an
    atom on a special position weighs 1/4 in the counts, yet calling it the wrong element is as
    wrong as for any atom, so the penalty on count deviations grows by 1/Z'."""
    return max(1.0, order_z / z) if z else 1.0


def constrained_assignment(table: list[dict[str, float]], expected: dict[str, float],
                           weights: list[float], free: tuple[str, ...] = (),
                           surplus_to_lightest: bool = True, penalty_scale: float = 1.0) -> list[str]:
    """Most likely labels whose totals match the expected element counts (a small MILP).

    `table[i]` gives atom i's log-likelihood for each candidate. Atom i counts `weights[i]`
    towards its element (1 on a general position, 1/order on a special one). Deviations from the
    expected totals are allowed at a penalty, so missing or extra atoms keep the problem
    feasible. Labels in `free` (e.g. 'not an atom') have no expected total. With
    `surplus_to_lightest`, the lightest element takes up any surplus for free (the baseline's
    rule for peaks that are not atoms, since it has no such label). `penalty_scale` multiplies the
    deviation penalty (count_penalty_scale).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    counted = list(expected)
    labels = counted + [f for f in free if f not in expected]
    lightest = min(counted, key=lambda e: ATOMIC_NUMBER[e])
    n, m, k = len(table), len(labels), len(counted)
    # variables: x[i, label] (binary), then under[e], over[e] (continuous >= 0) per counted element
    c = np.concatenate([-np.array([[row.get(e, -1e3) for e in labels] for row in table]).ravel(),
                        np.full(k, COUNT_SLACK_PENALTY * penalty_scale),
                        [0.0 if e == lightest and surplus_to_lightest else COUNT_SLACK_PENALTY * penalty_scale
                         for e in counted]])
    one_each = np.zeros((n, n * m + 2 * k))
    for i in range(n):
        one_each[i, i * m:(i + 1) * m] = 1.0
    totals = np.zeros((k, n * m + 2 * k))
    for q in range(k):
        for i in range(n):
            totals[q, i * m + q] = weights[i]
        totals[q, n * m + q] = 1.0  # under-filled
        totals[q, n * m + k + q] = -1.0  # over-filled
    target = np.array([expected[e] for e in counted])
    res = milp(c, constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(totals, target, target)],
               integrality=np.concatenate([np.ones(n * m), np.zeros(2 * k)]),
               bounds=Bounds(0, np.concatenate([np.ones(n * m), np.full(2 * k, np.inf)])))
    if not res.success:
        raise RuntimeError(f"element assignment failed: {res.message}")
    x = res.x[: n * m].reshape(n, m)
    return [labels[int(np.argmax(x[i]))] for i in range(n)]


def _is_metal_like(estimate: float) -> bool:
    """Heavy scatterers that are not the common heavy non-metals (S, Cl, Br, I, P, Se, As)."""
    return not any(abs(estimate - ATOMIC_NUMBER[el]) < 1.0 for el in ("S", "Cl", "Br", "I", "Se", "As"))


