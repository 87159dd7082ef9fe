"""Dual-space phasing (core/dual_space.py): its peak search, its structure factors, and phases
good enough to build a model from."""
from __future__ import annotations

import numpy as np
import pytest

from aisolve.core.data_prep import prepare
from aisolve.core.dual_space import DualSpacePhaser, correlation, map_maxima, normalised_e_calc
from aisolve.core.pipeline import _best_candidate, _starting_u
from aisolve.core.shelx_ins import read_ins
from simulate import simulate_intensities
from test_solve import DATA


def test_map_maxima_finds_sites_between_grid_points():
    """Gaussian peaks placed off the grid (cell 10 x 9 x 7.5 A) are found, highest first, to a
    tenth of a grid step."""
    shape = (40, 36, 30)
    sites = np.array([[0.1234, 0.5678, 0.9012], [0.61, 0.27, 0.455], [0.987, 0.013, 0.5]])
    heights = np.array([3.0, 2.0, 1.0])
    axes = [np.arange(n) / n for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    rho = np.zeros(shape)
    for site, h in zip(sites, heights):
        d = grid - site
        d -= np.round(d)  # periodic: the nearest copy
        rho += h * np.exp(-((d * np.array([10.0, 9.0, 7.5])) ** 2).sum(axis=-1) / (2 * 0.35 ** 2))  # atoms ~0.35 A wide
    found, found_heights = map_maxima(rho, 3)
    assert found_heights[0] > found_heights[1] > found_heights[2]
    offsets = (found - sites + 0.5) % 1.0 - 0.5
    assert np.abs(offsets * np.array(shape)).max() < 0.1  # grid steps (the grid point alone: up to 0.5)


def test_normalised_e_calc_of_equal_atoms_has_unit_mean_square():
    rng = np.random.default_rng(0)
    hkl = rng.integers(-12, 13, size=(4000, 3))
    hkl = hkl[np.abs(hkl).sum(axis=1) > 0]
    e_calc = normalised_e_calc(hkl, rng.random((50, 3)), np.ones(50))
    assert np.mean(np.abs(e_calc) ** 2) == pytest.approx(1.0, abs=0.1)
    assert correlation(np.abs(e_calc) ** 2, np.abs(e_calc) ** 2) == pytest.approx(1.0)


def test_dual_space_phases_build_a_model_that_refines():
    """o-iodotoluene packed in P2_1/c: the best of the dual-space candidates, as the pipeline
    chooses among them, gives a model whose quick refinement reaches R1 < 0.15 (random phases:
    above 0.4)."""
    model = read_ins(DATA / "iodotoluene_packed.res")
    sym = model.symmetry
    data = prepare(simulate_intensities(model, d_min=0.8, noise=0.02), sym, model.cell_contents, None)
    n_asu = round(sum(v for el, v in model.cell_contents.items() if el != "H") / sym.space_group().order_z())
    result = DualSpacePhaser(n_asu, seed=3, max_trials=8).phase(data, sym, time_budget=60)
    assert result.solved and result.route == "dual_space"
    assert len(result.trials) == 8 and 1 <= len(result.candidates) <= 8
    ccs = [cc for cc, _ in result.candidates]
    assert ccs == sorted(ccs, reverse=True) and ccs[0] == max(t.figure_of_merit for t in result.trials)
    _, _, quick_r1, _ = _best_candidate(result, data, sym, model.cell_contents, n_asu, _starting_u(data))
    assert quick_r1 < 0.15


def test_the_search_stops_when_its_best_solution_is_found_again():
    """Four trials at the top CC, clear of the bulk (a solution) or being the bulk (an easy
    structure), end the search; a best CC found only once or a crowded top of the bulk does not."""
    phaser = DualSpacePhaser(10)
    bulk = [0.65, 0.67, 0.66, 0.68, 0.64, 0.66, 0.67, 0.65]
    assert phaser._found_again(bulk + [0.80, 0.795, 0.79, 0.798])
    assert not phaser._found_again(bulk + [0.80, 0.795, 0.79])  # three only
    assert not phaser._found_again(bulk + [0.80])
    assert not phaser._found_again([0.70, 0.695, 0.698, 0.692] + bulk)  # the top of the bulk
    assert phaser._found_again([0.90] * 7 + [0.60, 0.895])  # most trials end at one solution
    assert not phaser._found_again([0.80] * 4)  # too few trials to judge
