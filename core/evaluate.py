"""Score a solution against a published model: symmetry-, origin- and enantiomorph-aware matching.

Atoms are matched with cctbx's Euclidean model matching (emma), which tries every allowed origin
shift of the space group and the inverted model, within 0.5 A. Reference atoms that count are the
non-H atoms of the main conformation (PART 0, 1 or -1, occupancy >= 0.5); minor disorder
components may be matched but are not required.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cctbx import euclidean_model_matching as emma

from aisolve.core.geometry import contacts
from aisolve.core.model import Atom, Structure

MATCH_TOLERANCE = 0.5  # A


@dataclass
class Evaluation:
    n_reference: int  # required reference non-H atoms
    n_matched: int
    n_element_correct: int
    n_h_checked: int
    n_h_correct: int
    n_extra: int  # solution atoms matching nothing
    rms: float | None
    mismatches: list[str] = field(default_factory=list)
    # (solution atom index, reference element) of every required reference atom matched
    matched_elements: list[tuple[int, str]] = field(default_factory=list)

    @property
    def element_accuracy(self) -> float:
        return self.n_element_correct / self.n_reference if self.n_reference else 0.0

    @property
    def h_accuracy(self) -> float | None:
        return self.n_h_correct / self.n_h_checked if self.n_h_checked else None

    @property
    def all_correct(self) -> bool:
        """Structure-level correctness: every required atom matched with the right element, and no
        solution atom left over (a spurious site makes the model wrong whatever else it gets right)."""
        return self.n_reference > 0 and self.n_element_correct == self.n_reference and self.n_extra == 0

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "matched_elements"}
        d.update(element_accuracy=round(self.element_accuracy, 4), all_correct=self.all_correct,
                 h_accuracy=None if self.h_accuracy is None else round(self.h_accuracy, 4))
        return d


def _required(st: Structure) -> list[int]:
    return [i for i, a in enumerate(st.atoms)
            if a.element not in ("H", "D") and a.part in (0, 1, -1) and a.occupancy >= 0.5 - 1e-6]


def h_counts_by_distance(st: Structure, max_distance: float = 1.25) -> list[int]:
    """H atoms riding on each atom of `st` (by distance, with symmetry): the reference's H counts.
    Each H counts once, on its nearest non-H atom: an H in a short, strong hydrogen bond (e.g.
    hydrogen maleate's O-H...O, 1.2 A from both oxygens) rides on one of them, not on both."""
    xs = st.to_xray(include_hydrogens=True)
    elements = [a.element for a in st.atoms]
    table = contacts(xs, cutoff=max_distance)
    is_h = [e in ("H", "D") for e in elements]
    nearest = [min((c.distance for c in row if not is_h[c.j] and c.distance > 0.5), default=None)
               if is_h[k] else None for k, row in enumerate(table)]

    def weight(h: Atom) -> float:
        if h.part > 0:  # a disordered part: its major component counts, whole
            return 1.0 if (h.occupancy >= 0.5 or h.part == 1) else 0.0
        # no part, or SHELXL's PART -n: disorder over a symmetry element (an NH3 on a mirror is six
        # half H), counted by occupancy
        return h.occupancy

    def riding(row) -> list:
        return [c for c in row if is_h[c.j] and 0.5 < c.distance <= max_distance
                and nearest[c.j] is not None and c.distance <= nearest[c.j] + 1e-4]
    return [int(math.floor(0.5 + sum(weight(st.atoms[c.j]) for c in riding(row)))) for row in table]


def evaluate(solution: Structure, reference: Structure, solution_h_counts: list[int] | None = None) -> Evaluation:
    """Match the non-H atoms of `solution` (same cell and space group) onto `reference`."""
    sps = reference.symmetry.special_position_settings(min_distance_sym_equiv=0.5)
    ref_idx = [i for i, a in enumerate(reference.atoms) if a.element not in ("H", "D")]
    required = set(_required(reference))
    sol_idx = [i for i, a in enumerate(solution.atoms) if a.element not in ("H", "D")]
    ref_model = emma.model(sps, [emma.position(str(k), reference.atoms[i].xyz) for k, i in enumerate(ref_idx)])
    sol_model = emma.model(sps, [emma.position(str(k), solution.atoms[i].xyz) for k, i in enumerate(sol_idx)])
    n_required = len(required)
    if not sol_idx:
        return Evaluation(n_required, 0, 0, 0, 0, 0, None, ["no atoms in the solution"])
    matches = emma.model_matches(ref_model, sol_model, tolerance=MATCH_TOLERANCE,
                                 models_are_diffraction_index_equivalent=False,
                                 break_if_match_with_no_singles=False).refined_matches
    if not matches:
        return Evaluation(n_required, 0, 0, 0, 0, len(sol_idx), None, ["no match at any origin"])
    best = max(matches, key=lambda m: (sum(1 for p in m.pairs if ref_idx[p[0]] in required), -m.rms))
    ref_h = h_counts_by_distance(reference) if any(a.element == "H" for a in reference.atoms) else None
    n_matched = n_el = n_h_checked = n_h_ok = 0
    mismatches, matched_elements = [], []
    for k_ref, k_sol in best.pairs:
        i_ref, i_sol = ref_idx[k_ref], sol_idx[k_sol]
        if i_ref not in required:
            continue
        n_matched += 1
        r, s = reference.atoms[i_ref], solution.atoms[i_sol]
        matched_elements.append((i_sol, r.element))
        if r.element == s.element:
            n_el += 1
        else:
            mismatches.append(f"{r.label}: {s.element} ({s.label}) instead of {r.element}")
        if ref_h is not None and solution_h_counts is not None:
            n_h_checked += 1
            if ref_h[i_ref] == solution_h_counts[k_sol]:
                n_h_ok += 1
            else:
                mismatches.append(f"{r.label}: {solution_h_counts[k_sol]} H instead of {ref_h[i_ref]}")
    missing = n_required - n_matched
    if missing:
        mismatches.append(f"{missing} reference atoms not found")
    n_extra = len(sol_idx) - len(best.pairs)
    return Evaluation(n_required, n_matched, n_el, n_h_checked, n_h_ok, n_extra, float(best.rms), mismatches,
                      matched_elements)


def published_r1(path: str | Path) -> float | None:
    """R1 as the source file states it: SHELXL's 'REM R1 = ...' or the CIF's _refine_ls_R_factor_gt."""
    text = Path(str(path).split("#")[0]).read_text(errors="replace")
    m = re.search(r"REM\s+R1\s*=\s*([0-9.]+)", text)
    if m:
        return float(m.group(1))
    m = re.search(r"_refine_ls_R_factor_gt\s+([0-9.]+)", text)
    return float(m.group(1)) if m else None


