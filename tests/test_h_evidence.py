"""Difference-density evidence for H counts (core/h_evidence.py): the candidate groups per count,
the signal calibrated on the counts a prior is sure of, a confidently wrong prior overruled by a map
that shows the H, no evidence from a map that shows none, and on real data (shared entries) the
network with the map gets alanine's NH3+ right."""
from __future__ import annotations

import numpy as np
import pytest

from aisolve.core.evaluate import h_counts_by_distance
from aisolve.core.h_evidence import MIN_SIGNAL, count_log_evidence
from aisolve.core.hydrogens import candidate_groups
from aisolve.core.shelx_ins import read_ins
from conftest import EXAMPLE, REAL

REFERENCE = EXAMPLE / "reference" / "sucrose.res"


def _sucrose():
    st = read_ins(REFERENCE)
    heavy = [a for a in st.atoms if a.element != "H"]
    truth = [n for a, n in zip(st.atoms, h_counts_by_distance(st)) if a.element != "H"]
    xs = type(st)(cell=st.cell, space_group=st.space_group, atoms=heavy).to_xray(include_hydrogens=False)
    return st, xs, truth


def _density_at_true_h(st, height: float):
    """A map with a Gaussian peak of `height` sigma (0.25 A wide) on every symmetry copy of the true H."""
    uc = st.unit_cell
    ops = list(st.space_group.all_ops())
    h_frac = [a.xyz for a in st.atoms if a.element == "H"]
    copies = np.array([op * x for op in ops for x in h_frac], dtype=float)
    orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)

    def density(site):
        diff = copies - np.asarray(site)
        diff -= np.round(diff)
        d = np.linalg.norm(diff @ orth.T, axis=1).min()
        return height * float(np.exp(-0.5 * (d / 0.25) ** 2))
    return density


def _prior(counts, confidence=0.995, doubtful: int | None = None, doubt=0.95):
    """A prior sure of `counts` (one atom, `doubtful`, only at `doubt`)."""
    sure = np.full(len(counts), confidence)
    if doubtful is not None:
        sure[doubtful] = doubt
    p = np.repeat(((1 - sure) / 4)[:, None], 5, axis=1)
    p[np.arange(len(counts)), counts] = sure
    return np.log(p)


def test_every_count_gets_its_own_riding_group():
    st, xs, truth = _sucrose()
    candidates = candidate_groups(xs, st.temperature)
    for i, by_count in candidates.items():
        assert all(len(g.sites_frac) == k and g.pivot == i for k, g in by_count.items())
    # every atom that carries H in sucrose can be given its true count
    assert all(truth[i] in candidates.get(i, {}) for i, n in enumerate(truth) if n > 0)
    # a ring carbon with three heavy neighbours can take one H, not three
    c_h = next(i for i, n in enumerate(truth) if n == 1 and xs.scatterers()[i].scattering_type == "C")
    assert 1 in candidates[c_h] and 3 not in candidates[c_h]


def test_a_map_that_shows_the_h_overrules_a_confidently_wrong_prior():
    st, xs, truth = _sucrose()
    density = _density_at_true_h(st, 5.0)
    candidates = candidate_groups(xs, st.temperature, density)
    methylene = next(i for i, n in enumerate(truth) if n == 2)
    wrong = list(truth)
    wrong[methylene] = 1  # the prior gives this CH2 carbon one H at p = 0.95
    prior = _prior(wrong, doubtful=methylene)
    evidence, (signal, spread) = count_log_evidence(candidates, density, prior)
    assert 4.0 < signal <= 5.0 and spread >= 1.5  # calibrated on the sure C-H, CH2 and OH sites
    assert list((prior + evidence).argmax(axis=1)) == truth
    assert evidence[methylene, 2] > 0 > evidence[methylene, 1]


def test_a_map_without_h_signal_gives_no_evidence():
    st, xs, truth = _sucrose()
    density = _density_at_true_h(st, 0.5 * MIN_SIGNAL)
    evidence, (signal, _) = count_log_evidence(candidate_groups(xs, st.temperature, density), density,
                                               _prior(truth))
    assert signal < MIN_SIGNAL and not evidence.any()


@pytest.mark.parametrize("entry", ["tonto__alanin_shelx"])
def test_network_with_the_map_finds_the_nh3_of_a_zwitterion(entry):
    from aisolve.core.loaders import data_hklf, load_reflections
    from aisolve.core.pipeline import add_hydrogens
    from aisolve.models.hydrogen_typer import NetworkHydrogens, weights_present
    if REAL is None or not (REAL / entry).is_dir() or not weights_present():
        pytest.skip("shared real data or shipped weights absent")
    st = read_ins(REAL / entry / f"{entry}.res")
    truth = [n for a, n in zip(st.atoms, h_counts_by_distance(st)) if a.element != "H"]
    refl = load_reflections(REAL / entry / f"{entry}.hkl", data_hklf(st))
    model, figures, _ = add_hydrogens(st, refl, NetworkHydrogens())
    got = [n for a, n in zip(model.atoms, h_counts_by_distance(model)) if a.element != "H"]
    assert got == truth and 3 in truth  # N-H3+ and C-H3
    assert figures.r1 < 0.05
