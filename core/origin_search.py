"""Origin search after charge flipping: where in the P1 map do the space group's symmetry
elements sit?

A P1 solution is the structure shifted by an unknown s, F1(h) = F(h) exp(2 pi i h.s). Since
F(hR) = F(h) exp(-2 pi i h.t) for every operation (R|t), the average

    F_x(h) = 1/n sum_(R|t) F1(hR) exp(2 pi i h.t) exp(-2 pi i hR.x)

is coherent (every term equal to F(h)) at x = s and partly cancels elsewhere. So
T(x) = sum_h w_h |F_x(h)|^2 peaks at the origins; expanded, T is a Fourier series in
k = h(R - R'), so one FFT of coefficients gathered per pair of operations gives T on a whole grid.
smtbx's fast translation function (Navaza & Vernoslova 1995) and its L-BFGS shift refinement find
the same origins at several times the cost, and took a quarter to two fifths of the training-data
generator's time; the choice among origins (largest correlation of |F_x|^2 with F_obs^2) is the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
import scipy.fft
from scipy import optimize

from aisolve.core.model import miller_indices_array
from aisolve.core.p1_grid import grid_maxima


@dataclass
class OriginSolution:
    f_calc: miller.array  # symmetrised structure factors on the f_obs indices
    shift: np.ndarray  # fractional shift of the P1 map's origin
    cc: float  # correlation of |F_x|^2 with F_obs^2 (multiplicity-weighted)
    coherence: float  # T(x) / its largest possible value: 1 for a perfectly symmetric map


class _SymmetryTerms:
    """a_s(h) = F1(hR_s) exp(2 pi i h.t_s) for the asymmetric-unit reflections h and every
    operation s (centring included), and the Miller indices hR_s they came from."""

    def __init__(self, f_obs: miller.array, f_calc_p1: miller.array):
        ops = f_obs.space_group().all_ops()
        rot = np.array([op.r().as_double() for op in ops], dtype=float).reshape(-1, 3, 3)
        trans = np.array([op.t().as_double() for op in ops], dtype=float).reshape(-1, 3)
        h = miller_indices_array(f_obs.indices())
        # row vector times matrix: (hR)_j = sum_i h_i R_ij; einsum keeps BLAS threads out of it
        self.h_rot = np.rint(np.einsum("mi,sij->smj", h.astype(float), rot)).astype(np.int64)
        lookup = _DenseLookup(f_calc_p1)
        self.a = lookup(self.h_rot) * np.exp(2j * np.pi * np.einsum("mi,si->sm", h.astype(float), trans))
        self.n_ops = len(ops)

    def symmetrised(self, x: np.ndarray) -> np.ndarray:
        phase = np.exp(-2j * np.pi * np.einsum("smj,j->sm", self.h_rot.astype(float), x))
        return (self.a * phase).mean(axis=0)


class _DenseLookup:
    """F1 at any Miller index from a box array holding each P1 reflection and its Friedel mate
    (zero where the P1 set has neither)."""

    def __init__(self, f_calc_p1: miller.array):
        hkl = miller_indices_array(f_calc_p1.indices())
        values = f_calc_p1.data().as_numpy_array()
        self.half = np.abs(hkl).max(axis=0)
        self.box = np.zeros(tuple(2 * self.half + 1), dtype=np.complex128)
        self.box[tuple((-hkl + self.half).T)] = np.conj(values)
        self.box[tuple((hkl + self.half).T)] = values

    def __call__(self, hkl: np.ndarray) -> np.ndarray:
        idx = hkl + self.half
        inside = np.all((idx >= 0) & (idx < np.array(self.box.shape)), axis=-1)
        out = np.zeros(hkl.shape[:-1], dtype=np.complex128)
        out[inside] = self.box[tuple(idx[inside].T)]
        return out


def _grid_for(h_rot: np.ndarray) -> tuple[int, ...]:
    """T sampled every third of d_min, as smtbx samples its translation function. Folding k onto
    a grid coarser than its range still gives T exactly at the grid points, and the refinement
    finds the maxima between them. An axis along which every k is zero (a polar axis) gets a
    single grid point: T does not depend on it, and any origin along it is as good."""
    reach = np.abs(h_rot).reshape(-1, 3).max(axis=0)
    moves = np.any(h_rot != h_rot[:1], axis=(0, 1))
    return tuple(scipy.fft.next_fast_len(int(3 * r + 3)) if m else 1 for r, m in zip(reach, moves))


def translation_function(terms: _SymmetryTerms, weights: np.ndarray, grid: tuple[int, ...]):
    """T on the grid, normalised to 1 for a perfectly coherent map."""
    n = terms.n_ops
    ks, cs = [], []
    # the pair (s', s) gives the conjugate at -k: T = 2 Re of the pairs s < s'
    for s in range(n):
        for s2 in range(s + 1, n):
            ks.append(terms.h_rot[s] - terms.h_rot[s2])
            cs.append(2 * weights * terms.a[s] * np.conj(terms.a[s2]))
    diagonal = float((weights * (np.abs(terms.a) ** 2).sum(axis=0)).sum())
    full = float((weights * np.abs(terms.a).sum(axis=0) ** 2).sum())
    if not ks:  # P1: every origin is as good as any other
        return np.full(grid, 1.0)
    k = np.concatenate(ks)
    c = np.concatenate(cs)
    dims = np.array(grid)
    wrapped = k % dims
    linear = (wrapped[:, 0] * dims[1] + wrapped[:, 1]) * dims[2] + wrapped[:, 2]
    size = int(np.prod(dims))
    coeff = (np.bincount(linear, weights=c.real, minlength=size)
             + 1j * np.bincount(linear, weights=c.imag, minlength=size)).reshape(grid)
    # T(x) = sum_k C_k exp(-2 pi i k.x): numpy's forward transform at x = j / N
    return (np.fft.fftn(coeff).real + diagonal) / full


class _Correlation:
    """Multiplicity-weighted correlation of |F_x|^2 with F_obs^2 as a function of the shift x,
    with its gradient: what smtbx's shift refinement maximises (a least-squares fit with scale
    and bias)."""

    def __init__(self, terms: _SymmetryTerms, fo_sq: np.ndarray, multiplicity: np.ndarray):
        self.terms = terms
        self.w = multiplicity / multiplicity.sum()
        self.y = fo_sq - (self.w * fo_sq).sum()
        self.sy = np.sqrt((self.w * self.y * self.y).sum())
        self.q = -2 * np.pi * terms.h_rot.astype(float)  # (n, m, 3)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        z = self.terms.a * np.exp(1j * np.einsum("smj,j->sm", self.q, x))
        u = z.sum(axis=0)
        intensity = (u * np.conj(u)).real
        d_intensity = 2 * (np.conj(u)[:, None] * 1j * np.einsum("sm,smj->mj", z, self.q)).real
        w = self.w
        centred = intensity - (w * intensity).sum()
        cov = (w * self.y * intensity).sum()
        var = (w * centred * centred).sum()
        if var <= 0:
            return 0.0, np.zeros(3)
        d_cov = np.einsum("m,mj->j", w * self.y, d_intensity)
        d_var = 2 * np.einsum("m,mj->j", w * centred, d_intensity)
        cc = cov / (self.sy * np.sqrt(var))
        gradient = (d_cov - cov * d_var / (2 * var)) / (self.sy * np.sqrt(var))
        return float(cc), gradient


def origin_solutions(f_obs: miller.array, f_calc_p1: miller.array, min_cc: float = 0.9,
                     max_candidates: int = 8) -> list[OriginSolution]:
    """Symmetrised solutions at the strongest distinct maxima of T, best correlation first; only
    those whose |F_x|^2 correlate with F_obs^2 to at least `min_cc` (smtbx's acceptance rule).
    `max_candidates` maxima are refined: on 60 imperfect flipping solutions the best origin (as
    smtbx's exhaustive symmetrisation finds it) was among the 4 strongest in 58, the 8 in all."""
    terms = _SymmetryTerms(f_obs, f_calc_p1)
    fo = f_obs.data().as_numpy_array().astype(float)
    fo_sq = fo * fo
    grid = _grid_for(terms.h_rot)
    t_map = translation_function(terms, fo_sq, grid)
    maxima, _ = grid_maxima(t_map, max_candidates)
    multiplicity = f_obs.multiplicities().data().as_numpy_array().astype(float)
    correlation = _Correlation(terms, fo_sq, multiplicity)
    coherent_total = (fo_sq * np.abs(terms.a).sum(axis=0) ** 2).sum()  # T's value for a perfectly symmetric map
    out: list[OriginSolution] = []
    for j in maxima:
        fit = optimize.minimize(lambda x: tuple(-v for v in correlation(x)), j / np.array(grid), jac=True,
                                method="BFGS", options={"gtol": 1e-6, "maxiter": 50})
        x = fit.x % 1.0
        f_x = terms.symmetrised(x)
        cc = -float(fit.fun)
        if cc < min_cc:
            continue
        coherence = float((fo_sq * np.abs(f_x) ** 2).sum() * terms.n_ops ** 2 / coherent_total)
        out.append(OriginSolution(f_calc=miller.array(f_obs, flex.complex_double(f_x)),
                                  shift=x, cc=cc, coherence=coherence))
    out.sort(key=lambda s: -s.cc)
    return _distinct(out)


def _distinct(solutions: list[OriginSolution]) -> list[OriginSolution]:
    """One of each set of equivalent origins: they give the same map shifted, and the same
    correlation and coherence to rounding."""
    kept: list[OriginSolution] = []
    for s in solutions:
        if not any(abs(s.cc - k.cc) < 1e-5 and abs(s.coherence - k.coherence) < 1e-3 for k in kept):
            kept.append(s)
    return kept
