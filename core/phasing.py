"""Charge-flipping phasing (smtbx's solving loop around our numpy flipping cycle) with several
trials, a time budget and a truth-free choice.

smtbx's solving loop has no time limit and its phase-transition detector gives false positives,
so we step its state machine ourselves and keep starting fresh runs until the budget is spent.
Among all candidate solutions the one with the most skewed map wins: the skewness separates right
from wrong phases on real data, whereas the iterator's own correlation is F^2-weighted and can
accept an origin on a heavy atom.
"""
from __future__ import annotations

import time

from cctbx import crystal, maptbx, miller
from cctbx.array_family import flex
from smtbx.ab_initio import charge_flipping

from aisolve.core.data_prep import PreparedData, normalisation_factors
from aisolve.core.errors import InputError
from aisolve.core.flipping import NumpyFlippingIterator
from aisolve.core.origin_search import origin_solutions
from aisolve.core.stages import PhaserNotApplicable, PhasingResult, PhasingTrial, Progress, no_progress


def map_skewness(f_calc: miller.array) -> float:
    fft = f_calc.fft_map(resolution_factor=1 / 3, symmetry_flags=maptbx.use_space_group_symmetry)
    return maptbx.more_statistics(fft.real_map(False)).skewness()


class _SolvingIterator(charge_flipping.solving_iterator):
    """smtbx's state machine with our origin search in its evaluation step (same acceptance:
    symmetrised solutions whose intensities correlate with F_obs^2 to min_cc_peak_height)."""

    def _evaluating(self, original_f_obs):
        while True:
            attempts = 0
            while attempts < self.max_attempts_to_get_sharp_correlation_map:
                attempts += 1
                self.f_calc_solutions = [
                    (s.f_calc, s.shift, s.cc)
                    for s in origin_solutions(original_f_obs, self.flipping_iterator.f_calc, self.min_cc_peak_height)]
                yield self.finished if self.f_calc_solutions else self.starting
            self.max_attempts_exceeded = True


class ChargeFlippingPhaser:
    name = "charge_flipping"

    def __init__(self, n_trials: int = 5, min_trials: int = 3, seed: int = 0, max_cycles: int = 500):
        self.n_trials = n_trials
        self.min_trials = min_trials
        self.seed = seed
        self.max_cycles = max_cycles  # per attempt at a phase transition (smtbx's default: 500)

    def phase(self, data: PreparedData, symmetry: crystal.symmetry, time_budget: float = 60.0,
              progress: Progress = no_progress) -> PhasingResult:
        start = time.monotonic()
        deadline = start + time_budget
        candidates: list[tuple[float, miller.array]] = []
        trials: list[PhasingTrial] = []
        notes: list[str] = []
        for i in range(self.n_trials):
            if time.monotonic() > deadline:
                notes.append(f"time budget of {time_budget:.0f} s spent after {i} trials")
                break
            seed = self.seed + i
            flex.set_random_seed(seed)
            flipping = NumpyFlippingIterator(delta=None)
            # Two attempts per run: smtbx grows its iteration limit to a float on the third,
            # which islice() refuses; a fresh run with a new seed is as good.
            solving = _SolvingIterator(
                flipping, data.f_obs, yield_during_delta_guessing=True, yield_solving_interval=1,
                normalisations_for=normalisation_factors, max_attempts_to_get_phase_transition=2,
                max_solving_iterations=self.max_cycles)
            n = 0
            for _ in solving:
                n += 1
                if time.monotonic() > deadline:
                    break
            best_fom, best_cc = None, None
            for f_calc, _shift, cc in solving.f_calc_solutions:
                fom = map_skewness(f_calc)
                candidates.append((fom, f_calc))
                if best_fom is None or fom > best_fom:
                    best_fom, best_cc = fom, cc
            trials.append(PhasingTrial(seed=seed, figure_of_merit=best_fom if best_fom is not None else float("nan"),
                                       cc=best_cc, iterations=n))
            progress((i + 1) / self.n_trials, f"charge flipping trial {i + 1}: "
                     + (f"skewness {best_fom:.2f}" if best_fom is not None else "no solution"))
            if candidates and i + 1 >= self.min_trials:
                break
        if not candidates:
            return PhasingResult(route=self.name, f_calc=None, trials=trials,
                                 notes=notes + ["charge flipping found no solution"])
        candidates.sort(key=lambda c: -c[0])
        fom, f_calc = candidates[0]
        return PhasingResult(route=self.name, f_calc=f_calc, trials=trials, figure_of_merit=fom, notes=notes,
                             candidates=candidates)


def run_phaser(phaser, data: PreparedData, symmetry: crystal.symmetry, time_budget: float, seed: int = 0,
               progress: Progress = no_progress):
    """(result, the phaser that made it). A phaser that refuses the data (PhaserNotApplicable) hands
    over to charge flipping when it `falls_back_to_flipping`, the refusal first in the notes;
    otherwise the refusal is the user's error."""
    try:
        return phaser.phase(data, symmetry, time_budget, progress), phaser
    except PhaserNotApplicable as exc:
        if not getattr(phaser, "falls_back_to_flipping", False):
            raise InputError(None, f"{phaser.name} phaser: {exc}") from None
        flipping = ChargeFlippingPhaser(seed=seed)
        result = flipping.phase(data, symmetry, time_budget, progress)
        result.notes.insert(0, f"{phaser.name} phaser not used: {exc}")
        return result, flipping
