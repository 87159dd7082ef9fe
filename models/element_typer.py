"""The element network as a pipeline stage: peaks -> elements with probabilities.

Inference runs the shipped ONNX model with ONNX Runtime (CUDA provider when the GPU build and a
GPU are present, CPU otherwise); the torch weights are the fallback when onnxruntime is missing.
Decoding: a first pass with every token unknown, a second pass with the first pass's classes as
tokens; then, with cell contents, the assignment that honours the element counts (MILP over
the per-peak log-probabilities, 'not an atom' uncounted); without them, plain argmax.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisolve.core.elements import ATOMIC_NUMBER, SYMBOLS
from aisolve.core.model import Atom
from aisolve.core.stages import NO_ATOM, NOT_AN_ATOM, TypingContext, confidence_given_atom
from aisolve.core.typing_baseline import (asu_weights, constrained_assignment, count_penalty_scale,
                                          expected_fraction_per_asu)
from aisolve.models.element_decode import allowed_mask, log_softmax, second_pass_tokens
from aisolve.models.graph_inputs import build_input
from aisolve.models.inference import NetworkRunner

WEIGHTS_DIR = Path(__file__).parent / "weights"
ONNX_FILE, TORCH_FILE = "element_net.onnx", "element_net.pt"


# `--typer auto` picks the network (with the refined electron counts) since it beats the baseline
# on the real-data benchmark: with cell contents 25 vs 22 entries entirely right, 503 vs 485 of
# 529 atoms; without them 455 vs 361 atoms (though 2 vs 6 entries: the baseline's prior favours
# the C/O-only sugars and epoxides). On simulated structures solved end to end it has more atoms
# right with and without contents, but 67 vs 71 of 100 entries with them (2-3 atom minerals such
# as MoSe2 and PbSe); docs/BENCHMARKS.md, issue 5, eighth session.
NETWORK_IS_DEFAULT = True


def weights_present(weights_dir: Path = WEIGHTS_DIR) -> bool:
    return (weights_dir / ONNX_FILE).exists() or (weights_dir / TORCH_FILE).exists()


@dataclass
class Prediction:
    classes: list[int]  # per peak: 0 (not an atom) or Z
    log_probs: np.ndarray  # (n, N_CLASSES), second pass, restricted to the allowed classes
    as_atoms: list[int] | None = None  # per peak: its Z if it must be an atom (None: argmax of the elements)


class ElementPredictor(NetworkRunner):
    def __init__(self, weights_dir: Path = WEIGHTS_DIR, backend: str = "auto", device: str = "auto"):
        super().__init__(weights_dir, ONNX_FILE, TORCH_FILE, backend, device)

    def predict(self, xyz_frac: np.ndarray, heights: np.ndarray, cell, hall: str,
                contents: dict[str, float] | None, weights: list[float] | None = None,
                order_z: int = 1, evidence: list[dict[str, float]] | None = None,
                n_typed: int | None = None, penalty_scale: float = 1.0,
                candidate_elements: tuple[str, ...] = (), defer_to_evidence: set[int] = frozenset()) -> Prediction:
        """Classes of the first `n_typed` peaks (all by default); the others are context the network
        reads but the count-honouring assignment leaves out, so that they take no element of the
        contents from the atoms. `evidence`, if given, adds per-peak log-likelihoods of elements
        from another source (the refinement's electron counts) to the network's log-probabilities.
        `penalty_scale`: see core.typing_baseline.count_penalty_scale. `candidate_elements`: without
        contents, the only elements a peak may take (none given: any). `defer_to_evidence`: peaks
        whose element the evidence alone decides (the network keeps only its 'not an atom' call)."""
        from aisolve.models.element_net import UNKNOWN_TOKEN, composition_vector
        gi = build_input(np.asarray(xyz_frac, dtype=float), np.asarray(heights, dtype=float), cell, hall)
        comp = composition_vector(contents).numpy()
        mask = allowed_mask(contents, candidate_elements)
        first = log_softmax(self.logits(gi, np.full(gi.n_asu, UNKNOWN_TOKEN), comp), mask)
        second = log_softmax(self.logits(gi, second_pass_tokens(first.argmax(axis=1)), comp), mask)
        second = second[:n_typed]
        if evidence is not None:
            for i in defer_to_evidence:
                second[i, 1:] = np.where(np.isfinite(second[i, 1:]), second[i, 1:].max(), second[i, 1:])
            second = log_softmax(second + _evidence_matrix(evidence, second.shape), mask)
        weights = None if weights is None else weights[:n_typed]
        if not contents:
            return Prediction([int(c) for c in second.argmax(axis=1)], second)
        expected = {el: n for el, n in expected_fraction_per_asu(contents, order_z).items()
                    if mask[ATOMIC_NUMBER[el]]}
        if not expected:
            return Prediction([int(c) for c in second.argmax(axis=1)], second)
        table = [{**{el: row[ATOMIC_NUMBER[el]] for el in expected}, NOT_AN_ATOM: row[0]} for row in second]
        weights = weights or [1.0] * len(table)
        labels = constrained_assignment(table, expected, weights, free=(NOT_AN_ATOM,),
                                        surplus_to_lightest=False, penalty_scale=penalty_scale)
        classes = [0 if el == NOT_AN_ATOM else ATOMIC_NUMBER[el] for el in labels]
        return Prediction(classes, second, _as_atoms(classes, table, expected, weights, penalty_scale))


def _as_atoms(classes: list[int], table: list[dict[str, float]], expected: dict[str, float],
               weights: list[float], penalty_scale: float) -> list[int]:
    """The element of each peak called 'not an atom' if it is one after all: the counts the atoms
    left short are filled first, any surplus goes by likelihood. (PbSe, rock salt: the Se site,
    1/48 of an atom, came out 'not an atom'; its plain argmax, Pb, put two Pb in the model.)"""
    out = list(classes)
    rest = [i for i, c in enumerate(classes) if c == 0]
    if not rest:
        return out
    left = dict(expected)
    for c, w in zip(classes, weights):
        if c:
            left[SYMBOLS[c - 1]] = left.get(SYMBOLS[c - 1], 0.0) - w
    left = {el: max(n, 0.0) for el, n in left.items()}
    labels = constrained_assignment([{el: table[i][el] for el in expected} for i in rest], left,
                                    [weights[i] for i in rest], surplus_to_lightest=False,
                                    penalty_scale=penalty_scale)
    for i, el in zip(rest, labels):
        out[i] = ATOMIC_NUMBER[el]
    return out


def _evidence_matrix(evidence: list[dict[str, float]], shape) -> np.ndarray:
    """Per-peak element log-likelihoods as a (n, classes) matrix, shifted so that the best element
    adds 0; 'not an atom' adds 0 too and elements the evidence does not list get its worst value."""
    out = np.zeros(shape)
    for i, row in enumerate(evidence):
        if not row:
            continue
        best, worst = max(row.values()), min(row.values())
        out[i, 1:] = worst - best
        for el, v in row.items():
            z = ATOMIC_NUMBER.get(el, 0)
            if 0 < z < shape[1]:
                out[i, z] = v - best
    return out


def _distance_to_sites(point, sites: np.ndarray, sym) -> float:
    """Shortest distance (A) from the fractional `point`, or any symmetry copy of it, to one of `sites`."""
    from aisolve.core.geometry import images_near
    orth = np.array(sym.unit_cell().orthogonalization_matrix()).reshape(3, 3)
    # a copy of the point near a site is as far from it as that site's copy near the point
    copies = images_near(sym, sites, point)
    return float(np.linalg.norm(copies - orth @ np.asarray(point, dtype=float), axis=1).min())


def with_map_peaks(sites: np.ndarray, heights: np.ndarray, fft, sym) -> tuple[np.ndarray, np.ndarray]:
    """The model's sites followed by the map's highest other peaks, as many as a training graph holds.

    The network learnt from graphs of a map's int(1.3 n) + 3 highest peaks, about a third of them
    no atom, with heights relative to their median; shown only the model's atoms it takes the
    lowest of them for noise (on XHARPy__iam_iam_2 it called 3 of 12 real atoms no atom with
    p > 0.8). So the graph gets the peaks a training graph would have had beside the atoms.
    `fft`: the map as core.peaks.sigma_scaled_map makes it."""
    from aisolve.core.peaks import map_peaks
    from aisolve.models.graph_inputs import PEAK_MIN_HEIGHT, graph_peak_count
    n_extra = graph_peak_count(len(sites)) - len(sites)
    peaks = map_peaks(fft, max_peaks=len(sites) + 2 * n_extra, min_height=PEAK_MIN_HEIGHT)
    extra = [p for p in peaks if _distance_to_sites(p.xyz, sites, sym) > 0.5][:n_extra]
    if not extra:
        return sites, heights
    return (np.concatenate([sites, np.array([p.xyz for p in extra])]),
            np.concatenate([heights, np.array([p.height for p in extra])]))


def map_heights(fft, sites) -> np.ndarray:
    """Values of the sigma-scaled map `fft` (core.peaks.sigma_scaled_map) at the fractional sites:
    the scale of the peak search's heights."""
    from cctbx import maptbx
    real = fft.real_map_unpadded()
    return np.array([maptbx.tricubic_interpolation(real, tuple(s)) for s in sites], dtype=float)


class NetworkTyper:
    """AtomTyper backed by the element network.

    With `use_electron_counts` (the default) the network's per-peak log-probabilities are combined
    with the baseline's likelihoods from the refined electron counts and bonding, when the
    pipeline provides them: the network reads the peak pattern, the refinement measures how many
    electrons each site holds, and neither alone separates C/N/O as well on real data.
    """
    needs_map = True

    def __init__(self, predictor: ElementPredictor | None = None, use_electron_counts: bool = True):
        self.predictor = predictor or ElementPredictor()
        self.use_electron_counts = use_electron_counts
        self.name = "network+counts" if use_electron_counts else "network"

    def assign(self, atoms: list[Atom], context: TypingContext) -> list[Atom]:
        if context.map_coefficients is None:
            raise ValueError("the network typer needs the map the atoms stand in")
        from aisolve.core.peaks import sigma_scaled_map
        sym = context.symmetry
        fft = sigma_scaled_map(context.map_coefficients)  # one map for the heights and the extra peaks
        atom_sites = np.array([a.xyz for a in atoms], dtype=float)
        sites, heights = with_map_peaks(atom_sites, map_heights(fft, atom_sites), fft, sym)
        order_z = sym.space_group().order_z()
        weights = asu_weights(sym, [a.xyz for a in atoms])  # the assignment covers the atoms only
        evidence, defer = None, set()
        if self.use_electron_counts and context.electron_estimates is not None:
            from aisolve.core.typing_baseline import BaselineTyper
            # the smeared F of a disordered CF3 lie outside what the network learnt (it calls them
            # C or O, p > 0.9): the counts and the group's shape decide there
            evidence, defer = BaselineTyper().likelihoods_and_fluorine(atoms, context)
        pred = self.predictor.predict(sites, heights, sym.unit_cell().parameters(),
                                      sym.space_group().type().hall_symbol(), context.contents, weights, order_z,
                                      evidence, n_typed=len(atoms),
                                      penalty_scale=count_penalty_scale(order_z, context.z),
                                      candidate_elements=context.candidate_elements, defer_to_evidence=defer)
        for i, (atom, cls, row) in enumerate(zip(atoms, pred.classes, pred.log_probs)):
            if cls == 0:
                # The network removes nothing: its commonest error is a real atom called 'not an
                # atom' (synthetic validation; on real data, with removals at p >= 0.8, four entries
                # lost atoms for good). Refinement judges a spurious site (_prune); the probability
                # stays in element_probabilities. Its element fills the counts the others left short.
                cls = pred.as_atoms[i] if pred.as_atoms else int(np.argmax(row[1:])) + 1
            probs = {(NO_ATOM if k == 0 else SYMBOLS[k - 1]): math.exp(v)
                     for k, v in enumerate(reported_log_probs(row)) if np.isfinite(v)}
            atom.element = NOT_AN_ATOM if cls == 0 else SYMBOLS[cls - 1]
            atom.element_probabilities = dict(sorted(((el, p) for el, p in probs.items() if p > 1e-4),
                                                     key=lambda kv: -kv[1]))
            atom.confidence = confidence_given_atom(probs, atom.element)
        return atoms


# The network's probabilities (with the electron counts) are overconfident: on simulated structures
# of the validation split solved end to end, atoms reported at p 0.99-0.999 were right 95 % of the
# time. Dividing the log-probabilities by this temperature minimised the negative log-likelihood
# of the true elements there, with and without contents (bench/elements_solve.py --split val;
# docs/BENCHMARKS.md, issue 5). Decisions use the untempered values; only the reported ones change.
CONFIDENCE_TEMPERATURE = 2.5


def reported_log_probs(row: np.ndarray) -> np.ndarray:
    """The log-probabilities reported to the user: tempered (CONFIDENCE_TEMPERATURE), renormalised."""
    return log_softmax(row[None] / CONFIDENCE_TEMPERATURE, np.isfinite(row)[None])[0]
