"""Simulated experiments: cctbx structure factors with sampled ADPs, resolution, completeness and noise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cctbx import miller

from aisolve.core.model import ReflectionData, Structure

WAVELENGTHS = {"Mo": 0.71073, "Cu": 1.54184}


@dataclass
class SimConfig:
    d_min: tuple[float, float] = (0.7, 2.0)
    u_iso: tuple[float, float] = (0.01, 0.06)
    aniso_fraction: float = 0.3  # share of data sets with anisotropic ADPs
    completeness: tuple[float, float] = (0.85, 1.0)
    relative_noise: tuple[float, float] = (0.01, 0.05)
    drop_strongest_fraction: float = 0.1  # share of data sets missing a few of their strongest reflections
    cu_fraction: float = 0.35


@dataclass
class Experiment:
    reflections: ReflectionData
    wavelength: float
    d_min: float
    u_iso: float
    aniso: bool


def _with_adps(st: Structure, rng: np.random.Generator, u_base: float, aniso: bool):
    xs = st.to_xray(include_hydrogens=True)
    uc = xs.unit_cell()
    from cctbx import adptbx
    for sc in xs.scatterers():
        u = u_base * rng.uniform(0.8, 1.3) * (1.2 if sc.scattering_type == "H" else 1.0)
        if aniso and sc.scattering_type != "H":
            axes = rng.uniform(0.6, 1.5, size=3) * u
            rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
            u_cart = rot @ np.diag(axes) @ rot.T
            sc.u_star = adptbx.u_cart_as_u_star(uc, (u_cart[0, 0], u_cart[1, 1], u_cart[2, 2],
                                                     u_cart[0, 1], u_cart[0, 2], u_cart[1, 2]))
            sc.flags.set_use_u_aniso(True)
            sc.flags.set_use_u_iso(False)
        else:
            sc.u_iso = u
            sc.flags.set_use_u_iso(True)
            sc.flags.set_use_u_aniso(False)
    return xs


def simulate(st: Structure, rng: np.random.Generator, cfg: SimConfig | None = None) -> Experiment:
    """Merged F^2 with sigmas, as a diffractometer and integration program would give them."""
    cfg = cfg or SimConfig()
    radiation = "Cu" if rng.random() < cfg.cu_fraction else "Mo"
    wavelength = WAVELENGTHS[radiation]
    d_min = max(rng.uniform(*cfg.d_min), wavelength / 2 * 1.05)
    u_base = rng.uniform(*cfg.u_iso)
    aniso = rng.random() < cfg.aniso_fraction
    xs = _with_adps(st, rng, u_base, aniso)
    ms = miller.build_set(crystal_symmetry=xs, anomalous_flag=False, d_min=d_min)
    i_calc = ms.structure_factors_from_scatterers(xs, algorithm="fft").f_calc().intensities()
    i = i_calc.data().as_numpy_array()
    i *= 1e4 / max(i.max(), 1e-12)
    keep = rng.random(len(i)) < rng.uniform(*cfg.completeness)
    if rng.random() < cfg.drop_strongest_fraction:
        strongest = np.argsort(-i)[: int(rng.integers(1, 4))]
        keep[strongest] = False
    rel = rng.uniform(*cfg.relative_noise)
    sigma = np.sqrt((rel * i) ** 2 + 0.5 * (i + 1.0) + 1.0)
    obs = i + rng.normal(0.0, sigma)
    idx = np.array(i_calc.indices(), dtype=np.int32)
    refl = ReflectionData(indices=idx[keep], data=obs[keep], sigmas=sigma[keep], merged=True,
                          wavelength=wavelength, source="simulated")
    return Experiment(refl, wavelength, float(d_min), float(u_base), aniso)
