"""Least-squares refinement against F^2 with smtbx: isotropic or anisotropic, riding H, SHELX weights."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from cctbx import miller, xray
from scitbx.lstbx import normal_eqns_solving
from smtbx import refinement
from smtbx.refinement import least_squares
import smtbx.refinement.constraints.adp  # noqa: F401  (registers constraint classes)
import smtbx.refinement.constraints.geometrical.all  # noqa: F401


@dataclass
class Figures:
    r1: float  # Fo > 4 sigma(Fo)
    r1_all: float
    wr2: float
    goof: float
    n_data: int
    n_strong: int
    n_parameters: int
    scale: float
    weight_a: float
    weight_b: float

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class RefinementResult:
    xs: xray.structure
    figures: Figures
    fc_sq: miller.array  # scaled Fc^2 on the fo_sq indices


def set_refinement_flags(xs: xray.structure, aniso: bool, refine_occupancy: bool = False,
                         fixed_u_iso: set[int] | None = None) -> None:
    """Positions and ADPs of every atom; H stay isotropic; riding atoms get their flags from constraints."""
    fixed_u_iso = fixed_u_iso or set()
    for i, sc in enumerate(xs.scatterers()):
        sc.flags.set_grads(False)
        sc.flags.set_grad_site(True)
        is_h = sc.scattering_type in ("H", "D")
        if aniso and not is_h:
            if not sc.flags.use_u_aniso():
                sc.convert_to_anisotropic(xs.unit_cell())
            sc.flags.set_use_u_aniso(True)
            sc.flags.set_use_u_iso(False)
            sc.flags.set_grad_u_aniso(True)
        else:
            if sc.flags.use_u_aniso():
                sc.convert_to_isotropic(xs.unit_cell())
            sc.flags.set_use_u_iso(True)
            sc.flags.set_use_u_aniso(False)
            sc.flags.set_grad_u_iso(i not in fixed_u_iso)
        if refine_occupancy:
            sc.flags.set_grad_occupancy(True)


class RefinementDiverged(RuntimeError):
    """A displacement parameter grew past what the structure factors can be computed with."""


def refine(xs: xray.structure, fo_sq: miller.array, cycles: int = 8, constraints: list | None = None,
           weight: tuple[float, float] = (0.1, 0.0)) -> RefinementResult:
    """Levenberg-Marquardt least squares; `xs` is refined in place (flags must be set)."""
    model = refinement.model(
        fo_sq=fo_sq.as_xray_observations(), xray_structure=xs, constraints=constraints or [],
        restraints_manager=None,
        weighting_scheme=least_squares.mainstream_shelx_weighting(a=weight[0], b=weight[1]))
    ls = model.least_squares()
    try:
        normal_eqns_solving.levenberg_marquardt_iterations(  # iterates in its constructor
            ls, n_max_iterations=cycles, gradient_threshold=1e-6, step_threshold=1e-6)
        ls.build_up()  # figures for the final parameters
    except RuntimeError as exc:
        if "arg_limit exceeded" in str(exc):  # cctbx's Debye-Waller factor overflowed
            raise RefinementDiverged(str(exc).splitlines()[0]) from exc
        raise
    return RefinementResult(xs=xs, figures=_figures(ls, fo_sq, weight), fc_sq=_scaled_fc_sq(ls))


def _scaled_fc_sq(ls) -> miller.array:
    return ls.fc_sq.customized_copy(data=ls.fc_sq.data() * ls.scale_factor())


def _figures(ls, fo_sq: miller.array, weight: tuple[float, float]) -> Figures:
    r1, n_strong = ls.r1_factor(cutoff_factor=2)
    r1_all, n_all = ls.r1_factor()
    k = float(ls.scale_factor())
    # Reported in SHELX's convention (WGHT a b), where b multiplies P on the scale of Fo^2.
    return Figures(r1=float(r1), r1_all=float(r1_all), wr2=float(ls.wR2()), goof=float(ls.goof()),
                   n_data=int(n_all), n_strong=int(n_strong),
                   n_parameters=int(ls.reparametrisation.n_independents) + 1,
                   scale=k, weight_a=weight[0], weight_b=weight[1] * k)


def optimise_weights(fo_sq: miller.array, fc_sq: miller.array, n_parameters: int,
                     scale: float) -> tuple[float, float]:
    """a, b of w = 1/(s^2 + (aP)^2 + b k P) (smtbx's form; SHELX's b is b*k): every bin of Fc^2
    with a GooF as close to 1 as possible."""
    fo = fo_sq.data().as_numpy_array()
    sig = fo_sq.sigmas().as_numpy_array()
    fc = fc_sq.data().as_numpy_array()
    p = (np.maximum(fo, 0) + 2 * fc) / 3.0
    order = np.argsort(fc)
    bins = np.array_split(order, 10)
    dof = max(len(fo) - n_parameters, 1)
    best, best_cost = (0.1, 0.0), math.inf
    for a in np.linspace(0.0, 0.2, 41):
        for b_shelx in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
            b = b_shelx / scale
            w = 1.0 / (sig ** 2 + (a * p) ** 2 + b * scale * p)
            wd2 = w * (fo - fc) ** 2 * len(fo) / dof
            cost = sum((wd2[idx].mean() - 1.0) ** 2 for idx in bins if len(idx))
            if cost < best_cost:
                best, best_cost = (float(a), float(b)), cost
    return best
