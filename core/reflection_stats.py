"""Figures of a reflection set: resolution, completeness, I/sigma and systematic-absence checks."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cctbx import crystal
from cctbx.array_family import flex

from aisolve.core.model import ReflectionData

# An absence class is 'violated' when its mean I/sigma is clearly above noise.
ABSENCE_I_SIGMA_LIMIT = 3.0


@dataclass
class AbsenceClass:
    zone: str  # 'h0l', '0k0', 'hkl' (centring)...
    count: int
    mean_i_over_sigma: float


@dataclass
class ReflectionSummary:
    n_measured: int
    n_unique: int
    d_min: float
    d_max: float
    completeness: float
    mean_i_over_sigma: float
    is_intensity: bool
    absences: list[AbsenceClass] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def violated_absences(self) -> list[AbsenceClass]:
        return [a for a in self.absences if a.mean_i_over_sigma > ABSENCE_I_SIGMA_LIMIT]


def _zone(h: tuple[int, int, int]) -> str:
    return "".join(c if v != 0 else "0" for c, v in zip("hkl", h))


def absence_classes(refl: ReflectionData, sym: crystal.symmetry) -> list[AbsenceClass]:
    """Reflections the space group forbids, grouped by index zone, with their mean I/sigma."""
    ma = refl.miller_array(sym)
    flags = ma.sys_absent_flags().data()
    absent = ma.select(flags & (ma.sigmas() > 0))
    groups: dict[str, list[float]] = {}
    for h, i, s in zip(absent.indices(), absent.data(), absent.sigmas()):
        groups.setdefault(_zone(h), []).append(i / s)
    return [AbsenceClass(z, len(v), float(np.mean(v))) for z, v in sorted(groups.items())]


def summarise(refl: ReflectionData, sym: crystal.symmetry) -> ReflectionSummary:
    ma = refl.miller_array(sym)
    d = ma.d_spacings().data()
    warnings = list(refl.warnings)
    valid = ma.sigmas() > 0
    good = ma.select(valid)
    if good.size() < ma.size():
        warnings.append(f"{ma.size() - good.size()} reflections with sigma <= 0 (or none) ignored for I/sigma")
    mean_ratio = float(flex.mean(good.data() / good.sigmas())) if good.size() else float("nan")
    # Completeness counts every measured index, with or without a usable sigma.
    present = ma.select(~ma.sys_absent_flags().data())
    unique = present.as_non_anomalous_array().unique_under_symmetry().map_to_asu()
    summary = ReflectionSummary(
        n_measured=ma.size(), n_unique=unique.size(), d_min=float(flex.min(d)), d_max=float(flex.max(d)),
        completeness=float(unique.completeness()), mean_i_over_sigma=mean_ratio,
        is_intensity=refl.is_intensity, absences=absence_classes(refl, sym), warnings=warnings)
    for a in summary.violated_absences:
        summary.warnings.append(
            f"systematic absences violated: {a.count} {a.zone} reflections that {sym.space_group_info()} "
            f"forbids have mean I/sigma {a.mean_i_over_sigma:.1f}")
    return summary
