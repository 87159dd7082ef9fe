"""Weak-reflection-improved charge flipping (Oszlanyi & Suto 2005) on a numpy P1 grid.

A drop-in for smtbx's `weak_reflection_improved_iterator` inside smtbx's `solving_iterator`, which
keeps its delta guessing, phase-transition detection, polishing and origin search. smtbx builds a
miller.array, an fft_map and the map's full statistics on every cycle; for the small maps of small
molecules that bookkeeping, not the Fourier transforms, was most of the time. Here one cycle is two
FFTs and a few vector operations on reflections kept in a fixed order (weakest first).
"""
from __future__ import annotations

import math

import numpy as np
from cctbx import miller
from cctbx.array_family import flex

from aisolve.core.model import miller_indices_array
from aisolve.core.p1_grid import P1HalfGrid


class DensityMap:
    """The P1 map of one cycle; `sigma` and `skewness` as smtbx's fft_map extension gives them."""

    def __init__(self, rho: np.ndarray):
        self.rho = rho
        self._moments: tuple[float, float, float] | None = None

    def _central_moments(self) -> tuple[float, float, float]:
        if self._moments is None:
            flat = self.rho.reshape(-1)
            n = flat.size
            mean = float(flat.sum()) / n
            d = flat - mean
            d2 = d * d
            # not np.dot: a threaded BLAS call per cycle oversubscribes the generator's worker processes
            self._moments = (mean, float(d2.sum()) / n, float((d2 * d).sum()) / n)
        return self._moments

    def sigma(self) -> float:
        return math.sqrt(self._central_moments()[1])

    def skewness(self) -> float:
        _, var, third = self._central_moments()
        return third / var ** 1.5 if var > 0 else 0.0


class NumpyFlippingIterator:
    """Charge flipping with the weakest `weak_reflection_fraction` of reflections given their
    calculated amplitude and a phase shift of `delta_varphi` (pi/2), as smtbx's iterator does."""

    def __init__(self, delta: float | None = None, delta_varphi: float = math.pi / 2,
                 weak_reflection_fraction: float = 0.2):
        self.delta = delta
        self.delta_varphi = delta_varphi
        self.weak_reflection_fraction = weak_reflection_fraction

    # --- the interface smtbx's solving_iterator uses ---------------------------------------------
    def start(self, f_obs: miller.array, phases: flex.double, f_000: float = 0.0) -> None:
        order = f_obs.sort_permutation(by_value="data", reverse=True)  # weakest first
        self._set = f_obs.select(order)
        self._fo = self._set.data().as_numpy_array().astype(float)
        self._cut = int(self.weak_reflection_fraction * len(self._fo))
        self._weak_turn = np.exp(1j * self.delta_varphi)
        self._setup_grid(f_obs)
        phi = phases.as_numpy_array()[order.as_numpy_array()]
        self._fc = self._fo * np.exp(1j * phi)
        self.f_000 = float(f_000)
        self._synthesise()

    def __iter__(self):
        return self

    def __next__(self) -> "NumpyFlippingIterator":
        rho = self.rho_map.rho
        np.negative(rho, out=rho, where=rho < self.delta)
        gv, g0 = self._grid.analyse(rho)
        self.f_000 = float(g0.real) * self._fft_scale
        cut = self._cut
        fc = np.empty_like(gv)
        fc[:cut] = gv[:cut] * (self._weak_turn * self._fft_scale)
        strong = gv[cut:]
        modulus = np.abs(strong)
        unit = np.divide(strong, modulus, out=np.ones_like(strong), where=modulus > 0)
        fc[cut:] = self._fo[cut:] * unit
        self._fc = fc
        self._synthesise()
        return self

    @property
    def f_obs(self) -> miller.array:
        return self._set.customized_copy(data=flex.double(np.ascontiguousarray(self._fo)))

    @property
    def f_calc(self) -> miller.array:
        return miller.array(self._set, flex.complex_double(np.ascontiguousarray(self._fc)))

    def denormalise(self, normalisations: miller.array) -> None:
        """Back from E to F (smtbx polishes on F), keeping delta in step with the map's sigma."""
        match = self._set.match_indices(normalisations)
        assert not match.singles(0) and not match.singles(1)
        k = normalisations.select(match.permutation()).data().as_numpy_array()
        old_sigma = self.rho_map.sigma()
        self._fo = self._fo * k
        self._fc = self._fc * k
        self.f_000 = 0.0
        self._synthesise()
        self.delta *= self.rho_map.sigma() / old_sigma

    # --- grid bookkeeping -------------------------------------------------------------------------
    def _setup_grid(self, f_obs: miller.array) -> None:
        self._grid = P1HalfGrid(f_obs.unit_cell(), miller_indices_array(self._set.indices()), f_obs.d_min(),
                                resolution_factor=1 / 2)
        volume = f_obs.unit_cell().volume()
        n_points = math.prod(self._grid.n_real)
        self._fft_scale = volume / n_points
        self._map_scale = n_points / volume

    def _synthesise(self) -> None:
        rho = self._grid.synthesise(self._fc, self.f_000)
        rho *= self._map_scale
        self.rho_map = DensityMap(rho)
