"""The neural phaser's reflection grid in numpy (no torch, so that ONNX inference needs none):
P2_1/c's sign relations, the maps between the (21, 11, 11) grid and the P1 density grid, E-values,
density maps and PhAI's map-correlation measure.
"""
from __future__ import annotations

import numpy as np

from aisolve.models.data.phaser_samples import GRID_SHAPE, H_MAX, grid_indices

FFT_N = 24  # density grid per axis: > 2 H_MAX, and even so that half-cell origin shifts are exact
ORIGIN_PARITIES = np.array([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])
# (h, k, l) of every point of the reflection grid, shape GRID_SHAPE + (3,)
GRID_HKL = np.stack(np.meshgrid(np.arange(-H_MAX, H_MAX + 1), np.arange(H_MAX + 1), np.arange(H_MAX + 1),
                                indexing="ij"), axis=-1)


def equivalents(h: int, k: int, l: int) -> list[tuple[tuple[int, int, int], int]]:
    """The point-group equivalents of (h, k, l) in P2_1/c with the sign F(equivalent) / F(h, k, l).
    F is real (inversion at the origin); the 2_1 screw and the c glide add (-1)^(k+l)."""
    s = -1 if (k + l) % 2 else 1
    return [((h, k, l), 1), ((-h, -k, -l), 1), ((-h, k, -l), s), ((h, -k, l), s)]


def grid_maps():
    """Index maps between the (21, 11, 11) reflection grid and the FFT_N^3 P1 grid.

    expand_index/expand_sign: for each P1 grid point, the flat reflection-grid index holding its
    value (or a zero slot past the end) and the sign to apply. gather_index/gather_sign: for each
    reflection-grid point, its four equivalents on the P1 grid (an unused slot maps to point 0
    with sign 0)."""
    n_grid = int(np.prod(GRID_SHAPE))
    flat = np.ravel_multi_index
    in_sphere = {tuple(map(int, h)) for h in grid_indices()}
    expand_index = np.full(FFT_N ** 3, n_grid, dtype=np.int64)
    expand_sign = np.zeros(FFT_N ** 3, dtype=np.float32)
    gather_index = np.zeros((n_grid, 4), dtype=np.int64)
    gather_sign = np.zeros((n_grid, 4), dtype=np.float32)
    for h, k, l in in_sphere:
        g = flat((h + H_MAX, k, l), GRID_SHAPE)
        for j, ((eh, ek, el), sign) in enumerate(equivalents(h, k, l)):
            p = flat((eh % FFT_N, ek % FFT_N, el % FFT_N), (FFT_N,) * 3)
            gather_index[g, j], gather_sign[g, j] = p, sign / 4.0
            expand_index[p], expand_sign[p] = g, sign
    return expand_index, expand_sign, gather_index, gather_sign


class DensityMaps:
    """The network's coefficient -> density step in numpy, for figures of merit at inference."""

    def __init__(self):
        self.expand_index, self.expand_sign, _, _ = grid_maps()

    def __call__(self, coefficients: np.ndarray) -> np.ndarray:
        b = coefficients.shape[0]
        flat = np.concatenate([coefficients.reshape(b, -1), np.zeros((b, 1), coefficients.dtype)], axis=1)
        full = (flat[:, self.expand_index] * self.expand_sign).reshape(b, FFT_N, FFT_N, FFT_N)
        return np.fft.ifftn(full, axes=(1, 2, 3)).real


def map_correlation(signs: np.ndarray, phase_is_pi: np.ndarray, amplitudes: np.ndarray, mask: np.ndarray) -> float:
    """PhAI's success measure: the correlation of the maps with the observed amplitudes and the
    predicted or the true signs, at the best of the eight origins (1.0 = identical maps)."""
    w = amplitudes ** 2 * mask
    true = np.where(phase_is_pi, -1.0, 1.0)
    best = -1.0
    for parity in ORIGIN_PARITIES:
        flip = np.where((GRID_HKL @ parity) % 2 == 1, -1.0, 1.0)
        best = max(best, float((w * signs * true * flip).sum() / max(w.sum(), 1e-12)))
    return best


def normalised_amplitudes(amplitudes: np.ndarray, stol_sq: np.ndarray, mask: np.ndarray, n_bins: int = 8
                          ) -> np.ndarray:
    """E-values on the grid: |F| over the RMS |F| of its resolution shell (equal-count shells of the
    measured reflections), with P2_1/c's epsilon of 2 for h0l and 0k0; 0 where not measured."""
    e = np.zeros_like(amplitudes, dtype=np.float32)
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return e
    h, k, l = idx[0] - H_MAX, idx[1], idx[2]
    eps = np.where((k == 0) | ((h == 0) & (l == 0)), 2.0, 1.0)
    f2 = amplitudes[idx].astype(np.float64) ** 2 / eps
    order = np.argsort(stol_sq[idx], kind="stable")
    out = np.empty_like(f2)
    for chunk in np.array_split(order, min(n_bins, len(order))):
        out[chunk] = np.sqrt(f2[chunk] / max(f2[chunk].mean(), 1e-12))
    e[idx] = out
    return e
