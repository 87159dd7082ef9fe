"""On-the-fly phaser samples (PhAI): P2_1/c cells <= 10 A, |F| and true phases on a fixed grid.

The grid holds h -10..10, k 0..10, l 0..10 inside the sphere h^2+k^2+l^2 <= 100, origin excluded:
PhAI's 1,205 reflections. Structures are real molecular fragments (atoms of RDKit
conformers) placed at a random orientation and position in a random P2_1/c cell of realistic
volume. Structure factors are computed in numpy with Waasmaier-Kirfel form factors: P2_1/c is
centrosymmetric, so F is real and each phase is 0 or pi. Missing reflections (beyond d_min,
dropped at random, systematic absences) are zeros in the amplitude grid, and masked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from cctbx.eltbx import xray_scattering

H_MAX = 10
GRID_SHAPE = (2 * H_MAX + 1, H_MAX + 1, H_MAX + 1)  # h index is h + H_MAX


def grid_indices() -> np.ndarray:
    """The 1,205 reflections of the grid (the origin excluded), as PhAI uses them."""
    return np.array([(h, k, l) for h in range(-H_MAX, H_MAX + 1) for k in range(H_MAX + 1)
                     for l in range(H_MAX + 1) if 0 < h * h + k * k + l * l <= H_MAX * H_MAX], dtype=np.int32)


def systematically_absent(hkl: np.ndarray) -> np.ndarray:
    h, k, l = hkl.T
    return ((k == 0) & (l % 2 == 1)) | ((h == 0) & (l == 0) & (k % 2 == 1))


_FORM = {}


def _form_factor(element: str, stol_sq: np.ndarray) -> np.ndarray:
    if element not in _FORM:
        g = xray_scattering.wk1995(element, True).fetch()
        _FORM[element] = (np.array(g.array_of_a()), np.array(g.array_of_b()), g.c())
    a, b, c = _FORM[element]
    return (a[None, :] * np.exp(-b[None, :] * stol_sq[:, None])).sum(axis=1) + c


@dataclass
class PhaserSample:
    amplitudes: np.ndarray  # GRID_SHAPE float32, max 1, zeros where missing
    phase_is_pi: np.ndarray  # GRID_SHAPE bool (true phases)
    mask: np.ndarray  # GRID_SHAPE bool: measured, present reflections
    cell: tuple[float, ...]
    d_min: float
    true_amplitudes: np.ndarray | None = None  # GRID_SHAPE float32, same scale, every present reflection
    stol_sq: np.ndarray | None = None  # GRID_SHAPE float32, (sin theta / lambda)^2


class PhaserSampler:
    """Draws samples from a pool of molecular fragments (Cartesian, centred)."""

    def __init__(self, fragments: list[tuple[list[str], np.ndarray]], seed: int = 0):
        self.fragments = fragments
        self.rng = np.random.default_rng(seed)
        self.hkl = grid_indices()
        self.elements = sorted({e for els, _ in fragments for e in els})

    def random_structure(self):
        """(cell, fractional xyz, elements, u_iso): one fragment in a P2_1/c cell with edges <= 10 A."""
        rng = self.rng
        elements, xyz = self.fragments[int(rng.integers(len(self.fragments)))]
        n_heavy = sum(1 for e in elements if e != "H")
        beta = np.radians(rng.uniform(90, 115))
        volume = min(4 * n_heavy * rng.uniform(16, 22), 10 ** 3 * np.sin(beta) * 0.95)
        ratios = rng.uniform(0.6, 1.0, size=3)
        scale = (volume / (np.prod(ratios) * np.sin(beta))) ** (1 / 3)
        a, b, c = np.minimum(ratios * scale, 10.0)
        orth = _orthogonalisation(a, b, c, beta)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        cart = xyz @ q.T + orth @ rng.uniform(0, 1, size=3)
        frac = cart @ np.linalg.inv(orth).T
        return (a, b, c, 90.0, float(np.degrees(beta)), 90.0), frac, elements, rng.uniform(0.005, 0.06)

    def structure_factors(self, cell, frac: np.ndarray, elements: list[str], u_iso: float) -> np.ndarray:
        """Real F on the grid reflections (P2_1/c is centric: F = 2 sum f [cos 2pi h.x + cos 2pi h.(g x)])."""
        a, b, c, _, beta, _ = cell
        orth = _orthogonalisation(a, b, c, np.radians(beta))
        s = self.hkl @ np.linalg.inv(orth)  # reciprocal-space vectors (1/A), one row per reflection
        stol_sq = (s ** 2).sum(axis=1) / 4.0
        hkl = self.hkl.astype(np.float64)
        arg1 = hkl @ frac.T  # x, y, z
        arg2 = (hkl * np.array([-1.0, 1.0, -1.0])) @ frac.T + 0.5 * (hkl[:, 1] + hkl[:, 2])[:, None]
        cos_sum = 2.0 * (np.cos(2 * np.pi * arg1) + np.cos(2 * np.pi * arg2))
        f = np.zeros(len(self.hkl))
        for el in set(elements):
            cols = [i for i, e in enumerate(elements) if e == el]
            f += _form_factor(el, stol_sq) * cos_sum[:, cols].sum(axis=1)
        return f * np.exp(-8 * np.pi ** 2 * u_iso * stol_sq), stol_sq

    def sample(self, d_min: float | None = None, max_dropped: float = 0.15) -> PhaserSample:
        """A random structure's sample: d_min drawn from 0-2 A unless given, up to `max_dropped` of
        the reflections left out at random."""
        rng = self.rng
        cell, frac, elements, u_iso = self.random_structure()
        f, stol_sq = self.structure_factors(cell, frac, elements, u_iso)
        d_min = rng.uniform(0.0, 2.0) if d_min is None else d_min
        return sample_from_f(self.hkl, f, stol_sq, cell, d_min, rng.uniform(0, max_dropped), rng)


def sample_from_f(hkl: np.ndarray, f: np.ndarray, stol_sq: np.ndarray, cell, d_min: float, dropped: float,
                  rng: np.random.Generator) -> PhaserSample:
    """The grid sample of real structure factors `f` on the reflections `hkl` (grid_indices order):
    reflections beyond d_min, systematic absences and a random `dropped` share are missing."""
    absent = systematically_absent(hkl)
    d = 1.0 / np.sqrt(np.maximum(4 * stol_sq, 1e-12))
    measured = (d >= d_min) & ~absent & (rng.random(len(f)) >= dropped)
    scale = 1.0 / max(float((np.abs(f) * measured).max()), 1e-12)
    ix = (hkl[:, 0] + H_MAX, hkl[:, 1], hkl[:, 2])
    grids = {name: np.zeros(GRID_SHAPE, dtype=dtype) for name, dtype in
             (("amp", np.float32), ("true", np.float32), ("pi", bool), ("mask", bool), ("stol", np.float32))}
    grids["amp"][ix] = np.abs(f) * measured * scale
    grids["true"][ix] = np.abs(f) * ~absent * scale
    grids["pi"][ix] = f < 0
    grids["mask"][ix] = measured
    grids["stol"][ix] = stol_sq
    return PhaserSample(grids["amp"], grids["pi"], grids["mask"], tuple(cell), float(d_min), grids["true"],
                        grids["stol"])


def _orthogonalisation(a: float, b: float, c: float, beta: float) -> np.ndarray:
    """Monoclinic (unique axis b) orthogonalisation matrix, columns = a, b, c in Cartesian A."""
    return np.array([[a, 0.0, c * np.cos(beta)], [0.0, b, 0.0], [0.0, 0.0, c * np.sin(beta)]])
