"""The numpy origin search against the truth (shifted P1 copies of known structures) and
against smtbx's fast translation function + shift refinement on a real flipping solution."""
import aisolve.core  # noqa: F401  (cctbx first)
import numpy as np
import pytest
from cctbx import sgtbx
from cctbx.array_family import flex
from cctbx.development import random_structure
from smtbx.ab_initio import charge_flipping

from aisolve.core.model import miller_indices_array
from aisolve.core.origin_search import _grid_for, _SymmetryTerms, origin_solutions
from aisolve.core.phasing import map_skewness


def _structure_factors(symbol, seed=2):
    flex.set_random_seed(seed)
    xs = random_structure.xray_structure(sgtbx.space_group_info(symbol), elements=["C"] * 10 + ["O"] * 3 + ["S"],
                                         random_u_iso=True, random_u_iso_scale=0.03, min_distance=1.2,
                                         volume_per_atom=18)
    return xs.structure_factors(d_min=0.9).f_calc()


def _shifted_p1(f, shift):
    p1 = f.expand_to_p1()
    hkl = miller_indices_array(p1.indices()).astype(float)
    return p1.customized_copy(data=p1.data() * flex.complex_double(np.exp(2j * np.pi * hkl @ shift)))


@pytest.mark.parametrize("symbol", ["P2_1/c", "P-1", "P2_12_12_1", "C2/c", "Pna2_1", "P2_1", "Cc", "R-3", "I4_1/a"])
def test_shifted_p1_copy_comes_back_symmetric(symbol):
    """A P1 map of the structure moved by an arbitrary shift: the best origin makes it fully
    symmetric again (correlation 1, the true map's skewness, the true amplitudes)."""
    f = _structure_factors(symbol)
    f_obs = abs(f).set_observation_type_xray_amplitude()
    shift = np.random.default_rng(0).random(3)
    best = origin_solutions(f_obs, _shifted_p1(f, shift))[0]
    assert best.cc > 0.9999 and best.coherence > 0.999
    assert map_skewness(best.f_calc) == pytest.approx(map_skewness(f), rel=1e-4)
    assert np.allclose(np.abs(best.f_calc.data().as_numpy_array()), np.abs(f.data().as_numpy_array()), rtol=1e-4,
                       atol=1e-4 * np.abs(f.data().as_numpy_array()).max())


def test_polar_axis_gets_one_grid_point():
    """P2_1: T cannot depend on y (every k = h(R - R') has k_y = 0), so y is not searched."""
    f = _structure_factors("P2_1")
    f_obs = abs(f).set_observation_type_xray_amplitude()
    grid = _grid_for(_SymmetryTerms(f_obs, f.expand_to_p1()).h_rot)
    assert grid[1] == 1 and grid[0] > 1 and grid[2] > 1


def test_same_origin_as_smtbx_on_a_flipping_solution():
    """A real, imperfect charge-flipping solution: our best origin has smtbx's correlation and
    gives the same map (same skewness)."""
    f = _structure_factors("P2_1/c", seed=5)
    f_obs = abs(f).set_observation_type_xray_amplitude()
    flex.set_random_seed(1)
    solving = charge_flipping.solving_iterator(charge_flipping.weak_reflection_improved_iterator(), f_obs,
                                               max_attempts_to_get_phase_transition=2)
    for _ in solving:
        if solving.state is solving.evaluating:
            break
    f_p1 = solving.flipping_iterator.f_calc
    theirs = max(charge_flipping.f_calc_symmetrisations(f_obs, f_p1, 0.0), key=lambda s: s[2])
    ours = origin_solutions(f_obs, f_p1, min_cc=0.0)[0]
    assert ours.cc == pytest.approx(theirs[2], abs=2e-3)
    assert map_skewness(ours.f_calc) == pytest.approx(map_skewness(theirs[0]), rel=1e-2)


def test_no_solution_below_the_correlation_floor():
    """Random phases in P1 are nowhere symmetric: nothing passes smtbx's 0.9 rule."""
    f = _structure_factors("P2_1/c")
    f_obs = abs(f).set_observation_type_xray_amplitude()
    p1 = f.expand_to_p1()
    rng = np.random.default_rng(3)
    random_phases = p1.customized_copy(data=flex.complex_double(
        np.abs(p1.data().as_numpy_array()) * np.exp(2j * np.pi * rng.random(p1.size()))))
    assert origin_solutions(f_obs, random_phases) == []
