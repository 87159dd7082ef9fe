"""Fourier synthesis and analysis on a P1 grid for a fixed list of reflections, with numpy's real
FFTs: the per-cycle transforms of the iterative phasers (charge flipping, dual space), where
cctbx's miller.array/fft_map bookkeeping would cost more than the transforms themselves."""
from __future__ import annotations

import numpy as np
import scipy.fft
from cctbx import maptbx, sgtbx, uctbx
from scipy import ndimage


class P1HalfGrid:
    """The half (l >= 0) reciprocal grid of a real map: a reflection with l < 0 is stored as its
    Friedel mate, and the l = 0 plane also holds every reflection's mate."""

    def __init__(self, unit_cell: uctbx.unit_cell, hkl: np.ndarray, d_min: float, resolution_factor: float):
        # smtbx's gridding, so that maps and thresholds mean the same as with its iterators
        gridding = maptbx.crystal_gridding(
            unit_cell=unit_cell, space_group_info=sgtbx.space_group_info("P1"), d_min=d_min,
            resolution_factor=resolution_factor, symmetry_flags=maptbx.use_space_group_symmetry)
        self.n_real = tuple(int(n) for n in gridding.n_real())
        n0, n1, n2 = self.n_real
        self._half = (n0, n1, n2 // 2 + 1)
        hkl = np.array(hkl, dtype=np.int64)
        self._mate = hkl[:, 2] < 0
        hkl[self._mate] *= -1
        self._linear = ((hkl[:, 0] % n0) * n1 + hkl[:, 1] % n1) * self._half[2] + hkl[:, 2]
        self._plane = np.flatnonzero(hkl[:, 2] == 0)
        plane = hkl[self._plane]
        self._plane_mates = ((-plane[:, 0] % n0) * n1 + (-plane[:, 1]) % n1) * self._half[2]

    def synthesise(self, values: np.ndarray, f_000: float = 0.0) -> np.ndarray:
        """sum_h F(h) exp(-2 pi i h.x) over the reflections and their mates, per grid point
        (numpy's inverse transform: divided by the number of points)."""
        g = np.zeros(self._half, dtype=np.complex128).reshape(-1)
        values = values.copy()
        values[self._mate] = np.conj(values[self._mate])
        g[self._linear] = values
        g[self._plane_mates] = np.conj(values[self._plane])
        g[0] = f_000
        return scipy.fft.irfftn(g.reshape(self._half), s=self.n_real, overwrite_x=True)

    def analyse(self, rho: np.ndarray) -> tuple[np.ndarray, complex]:
        """(the map's Fourier coefficients at the reflections, the one at h = 0), unscaled."""
        g = scipy.fft.rfftn(rho).reshape(-1)
        values = np.take(g, self._linear)
        values[self._mate] = np.conj(values[self._mate])
        return values, g[0]


def grid_maxima(rho: np.ndarray, n: int, positive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(grid indices, heights) of the `n` highest local maxima of a periodic map, highest first;
    only those above zero when `positive`."""
    is_max = ndimage.maximum_filter(rho, size=3, mode="wrap") == rho
    if positive:
        is_max &= rho > 0
    idx = np.argwhere(is_max)
    heights = rho[tuple(idx.T)]
    order = np.argsort(-heights)[:n]
    return idx[order], heights[order]
