"""MTZ through gemmi: read I/SIGI or F/SIGF (cell and space group from the file); write F/PHI/FOM."""
from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
from cctbx import sgtbx

from aisolve.core import symmetry
from aisolve.core.errors import InputError
from aisolve.core.model import ReflectionData

# Preferred column labels, most specific first; any J or F column with a Q after it also works.
_INTENSITY_LABELS = ("IMEAN", "I", "IOBS", "I-obs", "I_OBS")
_AMPLITUDE_LABELS = ("FP", "F", "FOBS", "F-obs", "F_OBS", "FMEAN")


def _pick(mtz: gemmi.Mtz, value_type: str, preferred: tuple[str, ...]):
    """(value column, sigma column) of the given MTZ type, or None."""
    cols = list(mtz.columns)
    pairs = []
    for i, col in enumerate(cols[:-1]):
        nxt = cols[i + 1]
        if col.type == value_type and nxt.type == "Q":
            pairs.append((col, nxt))
    for label in preferred:
        for pair in pairs:
            if pair[0].label.upper() == label.upper():
                return pair
    return pairs[0] if pairs else None


def _pick_anomalous(mtz: gemmi.Mtz, value_type: str, sigma_type: str):
    """I(+)/SIGI(+)/I(-)/SIGI(-) (K,M) or F(+)/SIGF(+)/F(-)/SIGF(-) (G,L) columns."""
    cols = list(mtz.columns)
    for i in range(len(cols) - 3):
        c = cols[i:i + 4]
        if [x.type for x in c] == [value_type, sigma_type, value_type, sigma_type]:
            return c
    return None


def group_from_gemmi(sg: gemmi.SpaceGroup) -> sgtbx.space_group:
    return symmetry.from_operators([op.triplet() for op in sg.operations()])


def group_to_gemmi(group: sgtbx.space_group) -> gemmi.SpaceGroup:
    ops = gemmi.GroupOps([gemmi.Op(op.as_xyz()) for op in group.all_ops()])
    sg = gemmi.find_spacegroup_by_ops(ops)
    if sg is None:
        raise ValueError(f"space group {symmetry.symbol(group)} has no MTZ (gemmi) equivalent")
    return sg


def read_mtz(path: str | Path) -> ReflectionData:
    path = Path(path)
    source = str(path)
    try:
        mtz = gemmi.read_mtz_file(source)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(source, f"not a readable MTZ file: {exc}") from None
    if mtz.spacegroup is None:
        raise InputError(source, "MTZ file has no space group")
    data = np.array(mtz, copy=False)
    hkl = data[:, :3].astype(np.int32)
    labels = " ".join(c.label for c in mtz.columns)
    mean = _pick(mtz, "J", _INTENSITY_LABELS)
    is_intensity = True
    if mean is None:
        mean = _pick(mtz, "F", _AMPLITUDE_LABELS)
        is_intensity = False
    if mean is not None:
        vals, sigs = data[:, mean[0].idx], data[:, mean[1].idx]
        indices = hkl
    else:
        anom = _pick_anomalous(mtz, "K", "M")
        is_intensity = anom is not None
        anom = anom or _pick_anomalous(mtz, "G", "L")
        if anom is None:
            raise InputError(source, "MTZ has no intensity (I/SIGI) or amplitude (F/SIGF) columns; "
                                     f"columns are: {labels}")
        plus, sig_plus, minus, sig_minus = (data[:, c.idx] for c in anom)
        indices = np.concatenate([hkl, -hkl])
        vals, sigs = np.concatenate([plus, minus]), np.concatenate([sig_plus, sig_minus])
    keep = ~np.isnan(vals) & ~np.isnan(sigs)
    wavelength = None
    for ds in mtz.datasets:
        if ds.wavelength > 0:
            wavelength = ds.wavelength
    indices = indices[keep]
    # an MTZ that repeats indices (unmerged, or merged only as far as the file's asymmetric unit
    # goes) is merged by data preparation like an .hkl
    merged = mtz.batches.size() == 0 if hasattr(mtz.batches, "size") else not len(mtz.batches)
    merged = merged and len(np.unique(indices, axis=0)) == len(indices)
    return ReflectionData(indices=indices, data=vals[keep], sigmas=sigs[keep],
                          is_intensity=is_intensity, hklf=4 if is_intensity else 3, merged=merged,
                          cell=tuple(mtz.cell.parameters), space_group=group_from_gemmi(mtz.spacegroup),
                          wavelength=wavelength, source=source)


def write_mtz(path: str | Path, cell: tuple[float, ...], group: sgtbx.space_group, indices: np.ndarray,
              columns: list[tuple[str, str, np.ndarray]], wavelength: float = 0.71073,
              title: str = "aisolve") -> None:
    """Columns are (label, MTZ type, values): e.g. ('F','F',f), ('SIGF','Q',s), ('PHI','P',deg), ('FOM','W',w)."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.title = title
    mtz.spacegroup = group_to_gemmi(group)
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("HKL_base")
    ds = mtz.add_dataset("aisolve")
    ds.project_name, ds.crystal_name, ds.wavelength = "aisolve", "crystal", wavelength
    for label, col_type, _ in columns:
        mtz.add_column(label, col_type)
    table = np.column_stack([indices.astype(np.float32)] + [np.asarray(v, dtype=np.float32) for _, _, v in columns])
    mtz.set_data(table)
    mtz.write_to_file(str(path))


def write_reflections_mtz(path: str | Path, refl: ReflectionData, cell, group, wavelength: float = 0.71073,
                          phases_deg: np.ndarray | None = None, fom: np.ndarray | None = None) -> None:
    """Observed data (I/SIGI or F/SIGF), plus PHI/FOM when phases are given."""
    cols = [("I", "J", refl.data), ("SIGI", "Q", refl.sigmas)] if refl.is_intensity else \
        [("F", "F", refl.data), ("SIGF", "Q", refl.sigmas)]
    if phases_deg is not None:
        cols.append(("PHI", "P", phases_deg))
        cols.append(("FOM", "W", fom if fom is not None else np.ones(len(refl))))
    write_mtz(path, cell, group, refl.indices, cols, wavelength)
