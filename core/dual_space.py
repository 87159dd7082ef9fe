"""Dual-space phasing in P1 (peak-list optimisation with random omission, after Sheldrick's
SHELXD; Schneider & Sheldrick 2002), for the structures where charge flipping stalls.

A trial starts from random atoms and alternates: E_c of the current atoms on the strong
reflections -> an E-map (|E_o|, the atoms' phases, Sim weights) -> its highest peaks become the
atoms, a random 30 % of them left out until the last cycles. The trials are ranked by the
correlation of E_o^2 with E_c^2 over all reflections; the best are symmetrised into the space
group by the origin search charge flipping uses. On simulated molecules whose packing stalls
charge flipping (benzenesulfonic acid, a chloronitrobenzoic acid), this found the phases.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.special
from cctbx import crystal
from cctbx.array_family import flex

from aisolve.core.data_prep import PreparedData
from aisolve.core.model import miller_indices_array
from aisolve.core.origin_search import origin_solutions
from aisolve.core.p1_grid import P1HalfGrid, grid_maxima
from aisolve.core.stages import PhasingResult, PhasingTrial, Progress, no_progress


def map_maxima(rho: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fractional sites, heights) of the `n` highest local maxima of a periodic map, each site
    refined by a parabola through its neighbours along every axis (the grid alone is ~0.25 A off)."""
    idx, heights = grid_maxima(rho, n, positive=True)
    shape = np.array(rho.shape)
    sites = idx.astype(float)
    for axis in range(3):
        up, down = idx.copy(), idx.copy()
        up[:, axis] = (up[:, axis] + 1) % shape[axis]
        down[:, axis] = (down[:, axis] - 1) % shape[axis]
        below, above = rho[tuple(down.T)], rho[tuple(up.T)]
        curvature = below - 2 * heights + above
        safe = np.where(curvature < 0, curvature, -1.0)
        sites[:, axis] += np.clip(np.where(curvature < 0, 0.5 * (below - above) / safe, 0.0), -0.5, 0.5)
    return sites / shape, heights


def normalised_e_calc(hkl: np.ndarray, sites: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """E_c of point atoms with the given weights: sum_j w_j exp(2 pi i h.x_j) / sqrt(sum_j w_j^2)."""
    terms = np.exp(2j * np.pi * (hkl.astype(float) @ sites.T))
    return terms @ weights / np.sqrt((weights * weights).sum())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


REPEAT_CC = 0.01  # trials this close to the best CC count as finding it again
SOLUTION_MARGIN = 0.05  # a best CC this far above the median trial stands out as a solution


class DualSpacePhaser:
    name = "dual_space"

    def __init__(self, n_atoms: int, seed: int = 0, cycles: int = 60, keep_fraction: float = 0.7,
                 strong_fraction: float = 0.4, max_trials: int = 200, n_candidates: int = 8,
                 min_trials: int = 8):
        self.n_atoms = n_atoms  # non-H atoms in the asymmetric unit
        self.seed = seed
        self.cycles = cycles
        self.keep_fraction = keep_fraction  # of the peaks, in every cycle but the last few
        self.strong_fraction = strong_fraction  # of the P1 reflections (largest |E|) that phase
        self.max_trials = max_trials
        # the best trials by CC handed on to the quick-refinement choice: where no solution stands
        # out, the CCs of right and wrong trials are within noise (simulated Pna2_1 dichloro-
        # phenyl glycidyl ether: all trials 0.68-0.73, the right one 8th at 0.72, its quick
        # refinement R1 0.30 against 0.38 and more)
        self.n_candidates = n_candidates
        self.min_trials = min_trials  # before the search may stop on a repeated solution

    def phase(self, data: PreparedData, symmetry: crystal.symmetry, time_budget: float = 30.0,
              progress: Progress = no_progress) -> PhasingResult:
        deadline = time.monotonic() + time_budget
        e_p1 = data.e_values.customized_copy(sigmas=None).expand_to_p1()
        hkl = miller_indices_array(e_p1.indices())
        e_obs = e_p1.data().as_numpy_array().astype(float)
        strong = np.argsort(-e_obs)[:max(int(self.strong_fraction * len(e_obs)), 1)]
        grid = P1HalfGrid(symmetry.unit_cell(), hkl[strong], data.d_min, resolution_factor=1 / 3)
        n_p1 = max(int(round(self.n_atoms * symmetry.space_group().order_z())), 1)
        rng = np.random.default_rng(self.seed)
        ranked: list[tuple[float, np.ndarray]] = []  # (CC, E_c on all P1 reflections)
        trials: list[PhasingTrial] = []
        ccs: list[float] = []
        for i in range(self.max_trials):
            if time.monotonic() > deadline or self._found_again(ccs):
                break
            sites, weights = self._trial(rng, hkl[strong], e_obs[strong], grid, n_p1)
            e_calc = normalised_e_calc(hkl, sites, weights)
            cc = correlation(e_obs ** 2, np.abs(e_calc) ** 2)
            trials.append(PhasingTrial(seed=self.seed, figure_of_merit=cc, cc=cc, iterations=self.cycles))
            ccs.append(cc)
            ranked.append((cc, e_calc))
            ranked.sort(key=lambda r: -r[0])
            del ranked[self.n_candidates:]
            progress(min(1.0, 1 - (deadline - time.monotonic()) / time_budget),
                     f"dual-space trial {i + 1}: best CC {ranked[0][0]:.3f}")
        stopped = " (the best CC found again: stopped)" if self._found_again(ccs) else ""
        notes = [f"dual space: {len(trials)} trials of {self.cycles} cycles, {n_p1} atoms in P1{stopped}"]
        candidates = []
        f_obs = data.f_obs.customized_copy(sigmas=None)
        for cc, e_calc in ranked:
            solutions = origin_solutions(f_obs, e_p1.customized_copy(data=flex.complex_double(e_calc)), min_cc=0.0)
            if solutions:
                candidates.append((cc, f_obs.phase_transfer(solutions[0].f_calc)))
        if not candidates:
            return PhasingResult(route=self.name, f_calc=None, trials=trials, notes=notes + ["no trial ran"])
        return PhasingResult(route=self.name, f_calc=candidates[0][1], trials=trials, figure_of_merit=candidates[0][0],
                             notes=notes, candidates=candidates)

    def _found_again(self, ccs: list[float]) -> bool:
        """Whether the best CC so far stands for a solution the search keeps finding: four trials
        within REPEAT_CC of it, and either clear of the bulk of the trials (by SOLUTION_MARGIN over
        their median) or the bulk itself (most trials end there: an easy structure). On simulated
        molecules the right solutions formed such a cluster (CC 0.79-0.80 over a bulk at 0.65-0.68)
        within 25 trials of the 65-110 that a 20 s budget ran."""
        if len(ccs) < self.min_trials:
            return False
        best = max(ccs)
        near = sum(cc >= best - REPEAT_CC for cc in ccs)
        return near >= 4 and (best - float(np.median(ccs)) >= SOLUTION_MARGIN or near >= 0.75 * len(ccs))

    def _trial(self, rng: np.random.Generator, hkl: np.ndarray, e_obs: np.ndarray, grid: P1HalfGrid,
               n_p1: int) -> tuple[np.ndarray, np.ndarray]:
        sites, weights = rng.random((n_p1, 3)), np.ones(n_p1)
        for cycle in range(self.cycles):
            e_calc = normalised_e_calc(hkl, sites, weights)
            x = 2 * e_obs * np.abs(e_calc)
            sim = scipy.special.i1e(x) / scipy.special.i0e(x)
            rho = grid.synthesise(sim * e_obs * np.exp(1j * np.angle(e_calc)))
            sites, heights = map_maxima(rho, n_p1)
            if len(heights) == 0:  # a flat map: start again from random atoms
                sites, heights = rng.random((n_p1, 3)), np.ones(n_p1)
            weights = heights / heights.mean()  # a heavy atom's peak phases as one
            if cycle < self.cycles - 3:
                kept = rng.random(len(heights)) < self.keep_fraction
                kept[np.argmax(heights)] = True  # never an empty model
                sites, weights = sites[kept], weights[kept]
        return sites, weights
