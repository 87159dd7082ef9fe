"""What the difference density says about each atom's H count, as log-likelihoods to add to a prior.

A predictor of H counts (the hydrogen network) judges from the environment alone; the measured
data can overrule it. For every atom and count k the riding H are placed as they would ride
(core.hydrogens.candidate_groups) and the sigma-scaled difference density of the H-free model is
read at their sites. Each site's density is weighed as "an H is here" (a normal around the
structure's own H signal) against "nothing is here" (noise about zero, wider than the map's unit
sigma since rotating groups are turned onto the highest density). The H signal is calibrated on
the same map: the density at the sites of the counts the prior is sure of. Data that show no H
(signal below MIN_SIGNAL sigma) give no evidence, and the evidence is tempered (WEIGHT) because
neighbouring sites share map errors.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from aisolve.core.hydrogens import HydrogenGroup

CONFIDENT = 0.98  # prior probability of a count that lets its sites calibrate the H signal
MIN_CALIBRATION_SITES = 3
DEFAULT_SIGNAL = (3.0, 1.5)  # sigma: an H's peak in a difference map, and its spread, when uncalibrated
MIN_SIGNAL = 1.0  # sigma: H signal below this says the data cannot see H
MIN_SPREAD = 1.5
NULL_SPREAD = 1.5  # sigma: the density at a site with no H (noise, plus the bias of the best azimuth)
SITE_CAP = 8.0  # most log-likelihood one site may contribute, either way (a wrong heavy atom nearby)
WEIGHT = 0.3  # tempering (sites share map errors): the best on the simulated val split, bench/h_density.py


def _normal_log_pdf(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd)


def site_densities(candidates: dict[int, dict[int, HydrogenGroup]],
                   density: Callable[[tuple[float, float, float]], float]) -> dict[tuple[int, int], np.ndarray]:
    """The density at the H sites of every (atom, count) candidate."""
    return {(i, k): np.array([density(tuple(s)) for s in g.sites_frac])
            for i, by_count in candidates.items() for k, g in by_count.items()}


def h_signal(densities: dict[tuple[int, int], np.ndarray], prior_log_probs: np.ndarray) -> tuple[float, float]:
    """Mean and spread of the density at the sites of the counts the prior is sure of (>= 1 H)."""
    probs = np.exp(prior_log_probs)
    sure = [densities[(i, int(k))] for i, k in enumerate(probs.argmax(axis=1))
            if k > 0 and probs[i, k] >= CONFIDENT and (i, int(k)) in densities]
    values = np.concatenate(sure) if sure else np.zeros(0)
    if len(values) < MIN_CALIBRATION_SITES:
        return DEFAULT_SIGNAL
    median = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - median)))
    return median, max(spread, MIN_SPREAD)


def count_log_evidence(candidates: dict[int, dict[int, HydrogenGroup]],
                       density: Callable[[tuple[float, float, float]], float],
                       prior_log_probs: np.ndarray, weight: float = WEIGHT) -> tuple[np.ndarray, tuple[float, float]]:
    """(n, n_counts) log-likelihood of each count relative to none (0 where the density was not
    read: count 0, counts the geometry cannot place, waters), times `weight`, and the calibrated
    H signal."""
    evidence = np.zeros_like(prior_log_probs, dtype=float)
    densities = site_densities(candidates, density)
    signal, spread = h_signal(densities, prior_log_probs)
    if signal < MIN_SIGNAL:
        return evidence, (signal, spread)
    for (i, k), rho in densities.items():
        if k < evidence.shape[1]:
            llr = _normal_log_pdf(rho, signal, spread) - _normal_log_pdf(rho, 0.0, NULL_SPREAD)
            evidence[i, k] = weight * float(np.clip(llr, -SITE_CAP, SITE_CAP).sum())
    return evidence, (signal, spread)
