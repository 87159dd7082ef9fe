"""Fourier maps and their peaks: the E-map after phasing and difference maps after refinement."""
from __future__ import annotations

from cctbx import maptbx, miller
from cctbx.array_family import flex

from aisolve.core.stages import Peak


def sigma_scaled_map(coefficients: miller.array):
    """The map of `coefficients` on the grid every aisolve map uses (1/3 of d_min), in sigma units."""
    fft = coefficients.fft_map(resolution_factor=1 / 3, symmetry_flags=maptbx.use_space_group_symmetry)
    fft.apply_sigma_scaling()
    return fft


def model_phased(f_obs: miller.array, f_calc: miller.array) -> miller.array:
    """Observed amplitudes with the model's phases, on the reflections both have."""
    fo = f_obs.common_set(f_calc)
    return fo.phase_transfer(f_calc.common_set(fo))


def fourier_peaks(coefficients: miller.array, max_peaks: int, min_height: float = 1.0,
                  min_distance: float = 0.7) -> list[Peak]:
    """Symmetry-unique peaks of the map, highest first, heights in units of the map's sigma."""
    return map_peaks(sigma_scaled_map(coefficients), max_peaks, min_height, min_distance)


def map_peaks(fft, max_peaks: int, min_height: float = 1.0, min_distance: float = 0.7) -> list[Peak]:
    """fourier_peaks of a map already computed by sigma_scaled_map."""
    params = maptbx.peak_search_parameters(peak_search_level=3, interpolate=True,
                                           min_distance_sym_equiv=min_distance, max_clusters=max_peaks)
    found = fft.peak_search(params, verify_symmetry=False).all()
    return [Peak(tuple(s), float(h)) for s, h in zip(found.sites(), found.heights()) if h >= min_height]


def difference_coefficients(fo_sq: miller.array, f_calc: miller.array, scale: float) -> miller.array:
    """(Fo - k|Fc|) exp(i phi_c) on the reflections with Fo^2 > 0; `scale` is the LS scale on F^2."""
    fo = fo_sq.select(fo_sq.data() > 0)
    fc = f_calc.common_set(fo)
    fo = fo.common_set(fc)
    k = scale ** 0.5
    diff = fo.f_sq_as_f().data() - k * flex.abs(fc.data())
    phases = flex.arg(fc.data())
    # flex.polar wants non-negative moduli: a negative difference is a phase shift of pi
    return fc.customized_copy(data=flex.polar(flex.abs(diff), phases + flex.double(
        [0.0 if x >= 0 else 3.141592653589793 for x in diff])))
