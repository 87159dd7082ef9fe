"""The shipped element network: loading, typing a real structure, ONNX/torch parity, invariance, decoding."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from aisolve.core.evaluate import evaluate
from aisolve.core.loaders import load_reflections, load_structure
from aisolve.core.pipeline import SolveOptions, solve
from aisolve.core.stages import NOT_AN_ATOM
from aisolve.core.typing_baseline import constrained_assignment
from aisolve.models.element_typer import ElementPredictor, NetworkTyper, weights_present
from aisolve.models.graph_inputs import build_input
from conftest import EXAMPLE

pytestmark = pytest.mark.skipif(not weights_present(), reason="no shipped element-network weights")


@pytest.fixture(scope="module")
def reference():
    return load_structure(EXAMPLE / "reference" / "sucrose.res")


def _graph(reference, shift=(0.0, 0.0, 0.0)):
    """The reference's non-H atoms as peaks, heights roughly as in an E-map (O above C)."""
    heavy = reference.non_h_atoms()
    xyz = np.array([a.xyz for a in heavy]) + np.array(shift)
    height = np.array([1.3 if a.element == "O" else 1.0 for a in heavy])
    sg = reference.space_group
    return xyz, height, reference.cell, sg.type().hall_symbol()


def test_shipped_model_types_a_real_structure_correctly(reference):
    """Sucrose (measured data shipped in examples/): every non-H atom found with its element."""
    template = load_structure(EXAMPLE / "sucrose.ins")
    refl = load_reflections(EXAMPLE / "sucrose.hkl")
    result = solve(template, refl, SolveOptions(typer=NetworkTyper()))
    ev = evaluate(result.structure, reference)
    assert result.solved
    assert ev.n_matched == ev.n_reference == 23
    assert ev.n_element_correct == 23, ev.mismatches
    for a in result.structure.non_h_atoms():
        assert a.confidence is not None and 0.0 < a.confidence <= 1.0
        assert a.element in a.element_probabilities


def test_onnx_and_torch_give_the_same_logits(reference):
    xyz, height, cell, hall = _graph(reference)
    gi = build_input(xyz, height, cell, hall)
    tokens = np.zeros(gi.n_asu, dtype=np.int64)
    comp = np.zeros(95, dtype=np.float32)
    onnx = ElementPredictor(backend="onnx")
    torch_ = ElementPredictor(backend="torch")
    assert onnx.backend.name == "onnxruntime" and torch_.backend.name == "torch"
    a, b = onnx.logits(gi, tokens, comp), torch_.logits(gi, tokens, comp)
    assert a.shape == (gi.n_asu, 95)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_rotating_and_moving_the_input_leaves_predictions_unchanged(reference):
    xyz, height, cell, hall = _graph(reference)
    gi = build_input(xyz, height, cell, hall)
    pred = ElementPredictor(backend="onnx")
    tokens = np.zeros(gi.n_asu, dtype=np.int64)
    comp = np.zeros(95, dtype=np.float32)
    before = pred.logits(gi, tokens, comp)
    rng = np.random.default_rng(0)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    gi.pos = (gi.pos @ rot.T + np.array([3.0, -2.0, 7.5])).astype(np.float32)
    after = pred.logits(gi, tokens, comp)
    np.testing.assert_allclose(before, after, atol=1e-3)
    assert (before.argmax(axis=1) == after.argmax(axis=1)).all()


def test_constrained_decoder_honours_counts():
    """Three peaks look most like O, but the contents allow two O and one N: the least O-like becomes N."""
    table = [{"O": -0.1, "N": -2.5, NOT_AN_ATOM: -6.0},
             {"O": -0.2, "N": -1.9, NOT_AN_ATOM: -6.0},
             {"O": -0.3, "N": -1.2, NOT_AN_ATOM: -6.0},
             {"O": -5.0, "N": -5.0, NOT_AN_ATOM: -0.01}]
    labels = constrained_assignment(table, {"O": 2.0, "N": 1.0}, [1.0] * 4, free=(NOT_AN_ATOM,),
                                    surplus_to_lightest=False)
    assert labels == ["O", "O", "N", NOT_AN_ATOM]


def test_a_peak_called_not_an_atom_kept_as_one_fills_the_missing_element():
    """Rock salt PbSe in Fm-3m (Z = 4): Pb and Se each on a site of weight 1/48. The Se peak is called
    'not an atom'; kept as an atom, it takes the Se the contents still lack, not its argmax Pb."""
    from aisolve.core.typing_baseline import count_penalty_scale
    from aisolve.models.element_typer import _as_atoms
    table = [{"Pb": -0.01, "Se": -5.0, NOT_AN_ATOM: -8.0}, {"Pb": -1.0, "Se": -2.0, NOT_AN_ATOM: -0.5}]
    expected, weights = {"Pb": 1 / 48, "Se": 1 / 48}, [1 / 48, 1 / 48]
    labels = constrained_assignment(table, expected, weights, free=(NOT_AN_ATOM,), surplus_to_lightest=False)
    assert labels == ["Pb", NOT_AN_ATOM]
    assert _as_atoms([82, 0], table, expected, weights, count_penalty_scale(192, 4.0)) == [82, 34]
    # Nothing left short: a surplus peak goes by likelihood.
    assert _as_atoms([82, 34, 0], table + [{"Pb": -0.2, "Se": -3.0, NOT_AN_ATOM: -0.1}], expected,
                     weights + [1 / 48], count_penalty_scale(192, 4.0)) == [82, 34, 82]


def test_count_deviations_of_a_fraction_of_a_formula_unit_cost_whole_atoms():
    """Urea in P-42_1m (Z = 2, 8 operations): C and O on 2mm (weight 1/4), N on a mirror (1/2).
    The C site looks more like N (log ratio 4.9); a quarter-weight deviation priced per asymmetric
    unit costs less than that, priced per formula-unit atom (x order_z / Z = 4) it does not."""
    from aisolve.core.typing_baseline import count_penalty_scale
    table = [{"C": -4.9, "N": -0.01, "O": -9.0}, {"C": -9.0, "N": -0.01, "O": -9.0},
             {"C": -9.0, "N": -6.0, "O": -0.01}]
    expected, weights = {"C": 0.25, "N": 0.5, "O": 0.25}, [0.25, 0.5, 0.25]
    assert constrained_assignment(table, expected, weights) == ["N", "N", "O"]
    scale = count_penalty_scale(8, 2.0)
    assert scale == 4.0 and count_penalty_scale(4, 4.0) == count_penalty_scale(4, 8.0) == count_penalty_scale(4, None) == 1.0
    assert constrained_assignment(table, expected, weights, penalty_scale=scale) == ["C", "N", "O"]


def test_network_decoding_with_contents_gives_the_formula(reference):
    """On the real sucrose sites plus two spurious peaks, the decoded counts are the asymmetric unit's."""
    xyz, height, cell, hall = _graph(reference)
    xyz = np.vstack([xyz, [[0.05, 0.05, 0.05], [0.55, 0.05, 0.45]]])
    height = np.concatenate([height, [0.25, 0.2]])
    pred = ElementPredictor().predict(xyz, height, cell, hall, reference.cell_contents,
                                      order_z=reference.space_group.order_z())
    classes = np.array(pred.classes)
    assert (classes == 6).sum() == 12 and (classes == 8).sum() == 11
    assert set(classes.tolist()) <= {0, 6, 8}
    assert np.isfinite(pred.log_probs[:, [0, 6, 8]]).all()


def test_candidate_elements_restrict_argmax_decoding(reference):
    """Without contents but with the elements a placeholder UNIT named, every class is one of them."""
    xyz, height, cell, hall = _graph(reference)
    height = height.copy()
    height[:4] *= 2.5  # peaks as heavy as S or Cl: free argmax may call them anything
    free = ElementPredictor().predict(xyz, height, cell, hall, {})
    named = ElementPredictor().predict(xyz, height, cell, hall, {}, candidate_elements=("C", "O"))
    assert set(named.classes) <= {0, 6, 8}
    assert not np.isfinite(named.log_probs[:, 7]).any() and np.isfinite(free.log_probs[:, 7]).all()


def test_a_graph_without_edges_is_typed(reference):
    """Two peaks far apart: the radius graph is empty (the exported ONNX graph cannot take that)."""
    pred = ElementPredictor()
    p = pred.predict(np.array([[0.1, 0.1, 0.1], [0.45, 0.6, 0.3]]), np.array([1.0, 1.2]), (20, 20, 20, 90, 90, 90),
                     "P 1", {"C": 1, "O": 1})
    assert len(p.classes) == 2 and np.isfinite(p.log_probs[:, [0, 6, 8]]).all()


def test_the_typer_shows_the_network_a_graph_as_in_training(reference):
    """The model's atoms plus the map's highest other peaks, as many as a training graph holds
    (graph_peak_count), none of them within 0.5 A of an atom or of an atom's symmetry copy."""
    from aisolve.core.data_prep import prepare
    from aisolve.core.peaks import model_phased, sigma_scaled_map
    from aisolve.models.element_typer import map_heights, with_map_peaks
    from aisolve.models.graph_inputs import graph_peak_count
    refl = load_reflections(EXAMPLE / "sucrose.hkl")
    sym = reference.symmetry
    data = prepare(refl, sym, reference.cell_contents)
    xs = reference.to_xray(include_hydrogens=False)
    coefficients = model_phased(data.f_obs, data.f_obs.structure_factors_from_scatterers(xs).f_calc())
    sites = np.array([a.xyz for a in reference.non_h_atoms()])
    fft = sigma_scaled_map(coefficients)
    all_sites, heights = with_map_peaks(sites, map_heights(fft, sites), fft, sym)
    assert len(all_sites) == graph_peak_count(23) == len(heights)
    assert np.array_equal(all_sites[:23], sites)
    extra = all_sites[23:]
    # brute force over the operators and neighbouring cells
    uc, shifts = sym.unit_cell(), np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    for p in extra:
        d = min(uc.distance(op * tuple(p), tuple(s + t)) for op in sym.space_group().all_ops()
                for s in sites for t in shifts)
        assert d > 0.5
    # atoms stand far above the extra peaks of a model-phased map
    assert heights[:23].min() > heights[23:].max()


def test_the_typer_removes_no_site_and_keeps_the_no_atom_probability(reference):
    """Sucrose's 23 atoms plus a site in empty space: every site comes back with an element (the
    pipeline's refinement, not the network, removes sites); the empty one's 'no atom' probability
    is reported and above 0.8 (where the old policy removed sites), and the 23 atoms are typed as published."""
    from aisolve.core.data_prep import prepare
    from aisolve.core.model import Atom
    from aisolve.core.peaks import model_phased
    from aisolve.core.stages import TypingContext
    sym = reference.symmetry
    data = prepare(load_reflections(EXAMPLE / "sucrose.hkl"), sym, reference.cell_contents)
    xs = reference.to_xray(include_hydrogens=False)
    coefficients = model_phased(data.f_obs, data.f_obs.structure_factors_from_scatterers(xs).f_calc())
    heavy = reference.non_h_atoms()
    empty = (0.05, 0.05, 0.05)
    sites = [a.xyz for a in heavy] + [empty]
    assert min(sym.unit_cell().distance(empty, s) for s in sites[:-1]) > 2.0
    atoms = [Atom(label=f"S{k}", element="C", xyz=tuple(s), uiso=0.03) for k, s in enumerate(sites)]
    context = TypingContext(symmetry=sym, contents=reference.cell_contents, data=data,
                            map_coefficients=coefficients)
    typed = NetworkTyper(use_electron_counts=False).assign(atoms, context)
    assert all(a.element != NOT_AN_ATOM for a in typed)
    assert [a.element for a in typed[:-1]] == [a.element for a in heavy]
    assert typed[-1].element_probabilities.get("no atom", 0.0) > 0.8


def test_reported_confidence_is_tempered_and_given_an_atom():
    """A site half 'no atom', with C 999 times likelier than N: its element confidence is C's share
    among the elements after tempering, so neither the doubt about the site nor the network's
    overconfidence makes the number."""
    from aisolve.core.stages import NO_ATOM, confidence_given_atom
    from aisolve.models.element_typer import CONFIDENCE_TEMPERATURE, reported_log_probs
    row = np.full(10, -np.inf)
    row[0], row[6], row[7] = np.log(0.5), np.log(0.5 * 0.999), np.log(0.5 * 0.001)
    reported = reported_log_probs(row)
    assert np.isclose(np.exp(reported[np.isfinite(reported)]).sum(), 1.0)
    probs = {NO_ATOM: np.exp(reported[0]), "C": np.exp(reported[6]), "N": np.exp(reported[7])}
    c, n = 0.999 ** (1 / CONFIDENCE_TEMPERATURE), 0.001 ** (1 / CONFIDENCE_TEMPERATURE)
    assert np.isclose(confidence_given_atom(probs, "C"), c / (c + n))
    assert 0.9 < confidence_given_atom(probs, "C") < 0.999
    assert confidence_given_atom(probs, NOT_AN_ATOM) == 0.0
