"""Terminal F recognised from a group's shape (core.terminal_fluorine) and its use by the typers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from cctbx import crystal

from aisolve.core.geometry import contacts, structure_from_sites
from aisolve.core.model import Atom
from aisolve.core.stages import TypingContext
from aisolve.core.terminal_fluorine import fluorine_like_terminals
from aisolve.core.typing_baseline import BaselineTyper
from conftest import REAL

CELL = 20.0  # A, cubic P1: no symmetry copies near the groups


def _on_cone(centre, d, theta_deg, phi_deg):
    """A substituent at distance d, theta from +x (the centre's bond axis points to -x), azimuth phi."""
    t, p = math.radians(theta_deg), math.radians(phi_deg)
    return np.asarray(centre) + d * np.array([math.cos(t), math.sin(t) * math.cos(p), math.sin(t) * math.sin(p)])


def _group(substituents, centre=(10.0, 10.0, 10.0)):
    """Centre, its ring neighbour at -x (with two ring bonds of its own), then the substituents
    given as (distance, angle to the ring bond, azimuth)."""
    c = np.asarray(centre)
    ring = c + np.array([-1.50, 0.0, 0.0])
    ring_2 = ring + 1.39 * np.array([-0.5, 0.866, 0.0])
    ring_3 = ring + 1.39 * np.array([-0.5, -0.866, 0.0])
    # the angle to the ring bond is 180 - theta from +x
    subs = [_on_cone(c, d, 180.0 - angle, phi) for d, angle, phi in substituents]
    return [c, ring, ring_2, ring_3] + subs


def _flagged(cart, light=None):
    sym = crystal.symmetry(unit_cell=(CELL,) * 3 + (90,) * 3, space_group_symbol="P1")
    xs = structure_from_sites(sym, [tuple(p / CELL) for p in cart], ["C"] * len(cart))
    table = contacts(xs, cutoff=2.6)
    return fluorine_like_terminals(table, np.array(xs.sites_cart()), xs.unit_cell(),
                                   light if light is not None else [True] * len(cart))


def test_an_ordered_cf3_is_recognised():
    cart = _group([(1.33, 111.0, phi) for phi in (0, 120, 240)])
    assert _flagged(cart) == {4, 5, 6}


def test_a_rotationally_disordered_cf3_is_recognised_peak_by_peak():
    """Four smeared peaks on the cone, two short and two long, 1.7 A from each other (DSR's p21n_cf3)."""
    cart = _group([(1.29, 110.0, 0), (1.31, 110.0, 90), (1.44, 109.0, 180), (1.44, 109.0, 270)])
    assert _flagged(cart) == {4, 5, 6, 7}


@pytest.mark.parametrize("name, substituents", [
    ("carboxylate, disordered over two O sites", [(1.26, 117.5, 0), (1.26, 117.5, 180), (1.25, 117.0, 200)]),
    ("gem-diol", [(1.40, 109.5, 0), (1.41, 109.5, 120), (1.52, 109.5, 240)]),
    ("tert-butyl", [(1.52, 109.5, phi) for phi in (0, 120, 240)]),
])
def test_look_alikes_are_not_fluorine(name, substituents):
    assert _flagged(_group(substituents)) == set(), name


def test_the_methyl_of_a_cf2_ch3_is_not_fluorine():
    cart = _group([(1.35, 109.5, 0), (1.35, 109.5, 120), (1.51, 109.5, 240)])
    assert _flagged(cart) == {4, 5}


def test_a_heavy_centre_is_not_a_cf3():
    """S with O at sulfonyl-like distances would be an SO3, not a CF3: only light centres count."""
    cart = _group([(1.33, 111.0, phi) for phi in (0, 120, 240)])
    light = [False] + [True] * (len(cart) - 1)
    assert _flagged(cart, light) == set()


def _context(cart, estimates, candidates):
    sym = crystal.symmetry(unit_cell=(CELL,) * 3 + (90,) * 3, space_group_symbol="P1")
    atoms = [Atom(label=f"X{k}", element="C", xyz=tuple(p / CELL)) for k, p in enumerate(cart)]
    return atoms, TypingContext(symmetry=sym, contents={}, data=None, electron_estimates=estimates,
                                candidate_elements=candidates)


def test_baseline_types_smeared_cf3_peaks_as_f_when_f_is_a_candidate():
    """The F of a disordered CF3 hold about C's electrons; their shape makes them F, and only
    where the formula names F."""
    cart = _group([(1.30, 110.0, 0), (1.31, 110.0, 120), (1.36, 110.0, 240)])
    atoms, context = _context(cart, [6.0, 6.0, 6.0, 6.0, 6.2, 6.0, 6.4], ("C", "F", "O"))
    typed = BaselineTyper().assign(atoms, context)
    assert [a.element for a in typed] == ["C"] * 4 + ["F"] * 3
    atoms, context = _context(cart, [6.0, 6.0, 6.0, 6.0, 6.2, 6.0, 6.4], ("C", "N", "O"))
    assert "F" not in {a.element for a in BaselineTyper().assign(atoms, context)}


@pytest.mark.skipif(REAL is None or not (REAL / "DSR__p21n_cf3").exists(), reason="real data not available")
def test_disordered_cf3_groups_of_real_data_are_typed_f():
    """DSR's p21n_cf3 (placeholder UNIT, so no counts): two CF3 groups refined as single, smeared
    sites; the network typer had called their six F C and O (then gave them riding H)."""
    from aisolve.core.evaluate import evaluate
    from aisolve.core.loaders import data_hklf, load_reflections, load_structure
    from aisolve.core.pipeline import SolveOptions, solve
    from aisolve.models.element_typer import NetworkTyper, weights_present
    if not weights_present():
        pytest.skip("no shipped element-network weights")
    entry = REAL / "DSR__p21n_cf3"
    reference = load_structure(str(entry / "DSR__p21n_cf3.res"))
    template = load_structure(str(entry / "DSR__p21n_cf3.res"))
    template.atoms, template.peaks = [], []
    refl = load_reflections(entry / "DSR__p21n_cf3.hkl", data_hklf(template))
    result = solve(template, refl, SolveOptions(typer=NetworkTyper(), hydrogens="none"))
    ev = evaluate(result.structure, reference)
    wrong_f = [m for m in ev.mismatches if m.startswith("F")]
    assert ev.n_matched == ev.n_reference and not wrong_f, ev.mismatches
