"""Labelled density-peak graphs, made exactly as at inference.

The simulated data go through the pipeline's own data preparation, charge flipping and peak
search. The solution is then brought onto the true model (the origin shift and hand that best
correlate its structure factors with the model's), and each peak is labelled with the element of
the atom within 0.5 A, or 0 ('not an atom');
each atom peak also gets the H count of its atom in the source model. The peaks keep the
solution's own frame, as the network will see them at inference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cctbx import miller
from cctbx.array_family import flex

from aisolve.core.data_prep import prepare
from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.evaluate import h_counts_by_distance
from aisolve.core.model import ReflectionData, Structure, miller_indices_array
from aisolve.core.peaks import fourier_peaks
from aisolve.core.phasing import ChargeFlippingPhaser
from aisolve.models.graph_inputs import PEAK_MIN_HEIGHT, graph_peak_count

MATCH = 0.5  # A
NOT_AN_ATOM = 0
# Flipping cycles per attempt at a phase transition. In generated data 99 % of the transitions
# that come at all come within 250 cycles of smtbx's 500, while maps that never phase spent
# nearly nine tenths of all cycles: stopping them at 250 halves that, and the few maps that would
# have phased later are replaced by fresh crystals.
MAX_CYCLES = 250


@dataclass
class PeakGraph:
    cell: tuple[float, ...]
    hall: str
    contents: dict[str, float]
    xyz: np.ndarray  # (n, 3) fractional, solution frame
    height: np.ndarray  # (n,) map sigma units
    label: np.ndarray  # (n,) atomic number or NOT_AN_ATOM
    h_count: np.ndarray  # (n,) H on the matched atom, -1 for non-atoms
    meta: dict = field(default_factory=dict)


def _true_non_h(model: Structure) -> tuple[list[int], list[int], list[int]]:
    h_counts = h_counts_by_distance(model)
    idx = [i for i, a in enumerate(model.atoms) if a.element not in ("H", "D")]
    return idx, [ATOMIC_NUMBER[model.atoms[i].element] for i in idx], [h_counts[i] for i in idx]


def label_graph(model: Structure, refl: ReflectionData, seed: int,
                phasing_time: float = 5.0) -> PeakGraph | None:
    """The peak graph of the map phased from `refl`, labelled from `model`; None if unphased."""
    sym = model.symmetry
    data = prepare(refl, sym, model.cell_contents)
    # One trial: a crystal whose map does not phase is replaced by a fresh one, which costs less.
    phasing = ChargeFlippingPhaser(n_trials=1, min_trials=1, seed=seed, max_cycles=MAX_CYCLES).phase(
        data, sym, phasing_time)
    if not phasing.solved:
        return None
    idx, z_true, h_true = _true_non_h(model)
    peaks = fourier_peaks(phasing.f_calc, max_peaks=graph_peak_count(len(idx)), min_height=PEAK_MIN_HEIGHT)
    if len(peaks) < 2:
        return None
    sites = np.array([p.xyz for p in peaks])
    aligned = align_by_correlation(sites, phasing.f_calc, model)
    labels, h_counts = label_sites(aligned, model, idx, z_true, h_true)
    if not labels.any():
        return None  # no peak on an atom: a wrong solution
    return PeakGraph(cell=tuple(model.cell), hall=model.space_group.type().hall_symbol(),
                     contents=dict(model.cell_contents), xyz=sites.astype(np.float32),
                     height=np.array([p.height for p in peaks], dtype=np.float32),
                     label=labels, h_count=h_counts,
                     meta={"d_min": round(float(data.d_min), 3), "n_true_non_h": len(idx),
                           "phasing_fom": round(float(phasing.figure_of_merit), 3)})


def align_by_correlation(sites: np.ndarray, f_solution: miller.array, model: Structure) -> np.ndarray:
    """Peak sites moved onto the model. A solution that is the model shifted by s has
    F_sol(h) = F_model(h) exp(2 pi i h.s), so sum_h F_model conj(F_sol) exp(2 pi i h.t) peaks at
    t = s; the inverted solution (F_model conj, shifted) peaks in sum_h conj(F_model F_sol) instead.
    Any of the space group's allowed origins gives such a peak, so no table of them is needed:
    one FFT per hand instead of emma's pairwise search (an eighth of the labelling time)."""
    xs = model.to_xray(include_hydrogens=True)
    # one moderate Uiso for all: some source CIFs' ADPs overflow cctbx's Debye-Waller factor
    xs.convert_to_isotropic()
    xs.set_u_iso(value=0.03)
    f_model = f_solution.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
    p1_sol, p1_model = f_solution.expand_to_p1(), f_model.expand_to_p1()
    pairs = p1_sol.match_indices(p1_model).pairs()
    i_sol, i_model = pairs.column(0).as_numpy_array(), pairs.column(1).as_numpy_array()
    hkl = miller_indices_array(p1_sol.indices())[i_sol]
    fs = p1_sol.data().as_numpy_array()[i_sol]
    fm = p1_model.data().as_numpy_array()[i_model]
    # even grids hold the half-cell shifts of many space groups' origins exactly
    grid = tuple(2 * (int(np.abs(hkl[:, k]).max()) + 1) for k in range(3))
    best = None
    for hand, terms in ((1, fm * np.conj(fs)), (-1, np.conj(fm * fs))):
        full = np.zeros(grid, dtype=np.complex128)
        full[tuple((hkl % grid).T)] = terms
        full[tuple((-hkl % grid).T)] = np.conj(terms)  # the Friedel mates, for a real correlation
        corr = np.fft.ifftn(full).real
        peak = np.unravel_index(int(np.argmax(corr)), grid)
        if best is None or corr[peak] > best[0]:
            best = (corr[peak], hand, terms, np.array(peak, dtype=float) / grid)
    _, hand, terms, shift = best
    shift = _refined_maximum(terms, hkl, shift, step_limit=1.0 / np.array(grid))
    return sites - shift if hand == 1 else shift - sites


def _refined_maximum(terms: np.ndarray, hkl: np.ndarray, t: np.ndarray, step_limit: np.ndarray) -> np.ndarray:
    """Newton steps on Re sum_h terms_h exp(2 pi i h.t) from the grid maximum t (the grid holds
    the peak to half a step only; a polar axis's shift is continuous)."""
    h2pi = 2 * np.pi * hkl.astype(float)
    for _ in range(4):
        # einsum, not BLAS: threaded BLAS calls oversubscribe the generator's worker processes
        z = terms * np.exp(1j * np.einsum("ij,j->i", h2pi, t))
        gradient = -np.einsum("ij,i->j", h2pi, z.imag)
        hessian = -np.einsum("ij,i,ik->jk", h2pi, z.real, h2pi)
        try:
            step = -np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            break
        t = t + np.clip(step, -step_limit, step_limit)
    return t


def label_sites(sites: np.ndarray, model: Structure, idx: list[int], z_true: list[int],
                h_true: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each site's nearest true non-H atom (with symmetry) within MATCH: its Z and H count."""
    xs = model.to_xray(include_hydrogens=False)
    found = xs.closest_distances(sites_frac=flex.vec3_double([tuple(s) for s in sites]),
                                 distance_cutoff=MATCH)
    labels = np.zeros(len(sites), dtype=np.int8)
    h_counts = np.full(len(sites), -1, dtype=np.int8)
    heavy_of = {k: pos for pos, k in enumerate(idx)}
    non_h_positions = [i for i, a in enumerate(model.atoms) if a.element not in ("H", "D")]
    for n, (i_seq, d) in enumerate(zip(found.i_seqs, found.smallest_distances)):
        if i_seq >= 0 and d <= MATCH:
            pos = heavy_of[non_h_positions[i_seq]]
            labels[n] = z_true[pos]
            h_counts[n] = h_true[pos]
    return labels, h_counts
