"""Simulated diffraction data from a model: cctbx F^2 with a sigma model and Gaussian noise."""
from __future__ import annotations

import numpy as np
from cctbx import miller

from aisolve.core.model import ReflectionData, Structure


def simulate_intensities(model: Structure, d_min: float = 0.8, noise: float = 0.02, seed: int = 1,
                         scale: float = 100.0) -> ReflectionData:
    xs = model.to_xray(include_hydrogens=True)
    ms = miller.build_set(crystal_symmetry=xs, anomalous_flag=False, d_min=d_min)
    i_calc = ms.structure_factors_from_scatterers(xs, algorithm="direct").f_calc().intensities()
    rng = np.random.default_rng(seed)
    i = i_calc.data().as_numpy_array() * scale / max(i_calc.data().as_numpy_array().max(), 1e-9) * 1000
    sigma = noise * i + 0.5 + 0.01 * i.mean()
    i_obs = i + rng.normal(0.0, sigma)
    return ReflectionData(indices=np.array(i_calc.indices(), dtype=np.int32), data=i_obs, sigmas=sigma,
                          merged=True, source="simulated")
