"""Data preparation: merge in the Laue group, F^2 -> F, Wilson scaling, E-values, resolution cut-off."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from cctbx import crystal, miller
from cctbx.array_family import flex

from aisolve.core.model import ReflectionData


@dataclass
class PreparedData:
    fo_sq: miller.array  # merged F^2 with sigmas (non-anomalous, absences removed): refinement target
    f_obs: miller.array  # merged F for reflections with F^2 > 0: phasing input
    e_values: miller.array  # normalised amplitudes |E| on the f_obs indices
    wilson_b: float
    wilson_scale: float
    d_min: float
    n_measured: int
    r_int: float | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_amplitudes(cls, f_obs: miller.array) -> "PreparedData":
        """Phasing input only (simulated amplitudes, no sigmas): for phasers, not for refinement."""
        return cls(fo_sq=f_obs.f_as_f_sq(), f_obs=f_obs, e_values=f_obs, wilson_b=0.0, wilson_scale=1.0,
                   d_min=f_obs.d_min(), n_measured=f_obs.size(), r_int=None)


def _intensities(refl: ReflectionData, sym: crystal.symmetry) -> miller.array:
    ma = refl.miller_array(sym)
    ma = ma.select(ma.sigmas() > 0)
    if not refl.is_intensity:
        # F, sigma(F) -> F^2, 2 F sigma(F)
        ma = ma.customized_copy(data=flex.pow2(ma.data()), sigmas=2.0 * ma.data() * ma.sigmas()) \
            .set_observation_type_xray_intensity()
    return ma


def normalisation_factors(f_obs: miller.array, n_bins: int | None = None) -> miller.array:
    """sqrt(eps <F^2/eps>) in equal-volume resolution shells, so that E = F / factor.

    smtbx's quasi-normalisation bins by counting distinct d-spacings, which fails for cubic cells;
    equal-volume shells work for every cell.
    """
    if n_bins is None:
        n_bins = max(4, min(30, f_obs.size() // 150))
    f_obs.setup_binner(n_bins=n_bins)
    eps = f_obs.epsilons().data().as_double()
    f2_over_eps = flex.pow2(f_obs.data()) / eps
    norm = flex.double(f_obs.size(), 1.0)
    for i_bin in f_obs.binner().range_used():
        sel = f_obs.binner().selection(i_bin)
        if sel.count(True):
            norm.set_selected(sel, math.sqrt(max(flex.mean(f2_over_eps.select(sel)), 1e-12)))
    return f_obs.customized_copy(data=norm * flex.sqrt(eps), sigmas=None)


def wilson_scale_and_b(f_obs: miller.array, contents: dict[str, float]) -> tuple[float, float]:
    """Least-squares Wilson plot: ln(<F^2>/sum f^2) = ln k - 2 B s^2 over equal-volume shells."""
    from cctbx.eltbx import xray_scattering
    f_obs.setup_binner(n_bins=max(4, min(20, f_obs.size() // 200)))
    xs, ys = [], []
    tables = {el: xray_scattering.wk1995(el, True).fetch() for el in contents if contents[el] > 0}
    for i_bin in f_obs.binner().range_used():
        sel = f_obs.binner().selection(i_bin)
        if sel.count(True) < 10:
            continue
        sub = f_obs.select(sel)
        s2 = flex.mean(sub.sin_theta_over_lambda_sq().data())
        eps = sub.epsilons().data().as_double()
        mean_f2 = flex.mean(flex.pow2(sub.data()) / eps)
        sum_f2 = sum(n * tables[el].at_stol_sq(s2) ** 2 for el, n in contents.items() if el in tables)
        if mean_f2 <= 0 or sum_f2 <= 0:
            continue
        xs.append(s2)
        ys.append(math.log(mean_f2 / sum_f2))
    if len(xs) < 3:
        return 1.0, 2.0
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1e-12)
    intercept = my - slope * mx
    return math.exp(intercept), -slope / 2.0


def prepare(refl: ReflectionData, sym: crystal.symmetry, contents: dict[str, float],
            d_min: float | None = None) -> PreparedData:
    """Merge to unique reflections of the Laue group and derive F and E; `d_min` cuts the resolution."""
    notes = []
    i_obs = _intensities(refl, sym)
    n_measured = i_obs.size()
    if d_min is not None:
        i_obs = i_obs.resolution_filter(d_min=d_min)
        notes.append(f"resolution cut at {d_min:.2f} A")
    i_obs = i_obs.eliminate_sys_absent(integral_only=False)
    merging = i_obs.as_non_anomalous_array().merge_equivalents()
    fo_sq = merging.array().set_observation_type_xray_intensity()
    r_int = merging.r_int() if n_measured > fo_sq.size() else None
    positive = fo_sq.select(fo_sq.data() > 0)
    f_obs = positive.f_sq_as_f()
    e = f_obs.customized_copy(data=f_obs.data() / normalisation_factors(f_obs).data(), sigmas=None)
    scale, b = wilson_scale_and_b(f_obs, contents or {"C": 1.0})
    return PreparedData(fo_sq=fo_sq, f_obs=f_obs, e_values=e, wilson_b=b, wilson_scale=scale,
                        d_min=fo_sq.d_min(), n_measured=n_measured, r_int=r_int, notes=notes)
