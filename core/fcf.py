"""SHELX .fcf (LIST 6: h k l Fo^2 sigma Fc phase) for map display in Olex2."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from cctbx import sgtbx


def write_fcf_text(title: str, cell: tuple[float, ...], group: sgtbx.space_group, indices: np.ndarray,
                   fo2: np.ndarray, sig_fo2: np.ndarray, fc: np.ndarray, phase_deg: np.ndarray) -> str:
    info = sgtbx.space_group_info(group=group)
    lines = [f"data_{title.split()[0] if title.split() else 'aisolve'}", "",
             "_shelx_refln_list_code          6", f"_shelx_F_calc_maximum      {float(np.max(fc)):.2f}",
             ""]
    for name, val in zip(("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"), cell):
        lines.append(f"_cell_{name:<12} {val:.4f}")
    lines += ["", f"_symmetry_space_group_name_H-M '{info.type().lookup_symbol()}'",
              f"_symmetry_space_group_name_Hall '{info.type().hall_symbol()}'", "",
              "loop_", " _symmetry_equiv_pos_as_xyz"]
    lines += [f" '{op.as_xyz()}'" for op in group.all_ops()]
    lines += ["", "loop_", " _refln_index_h", " _refln_index_k", " _refln_index_l",
              " _refln_F_squared_meas", " _refln_F_squared_sigma", " _refln_F_calc", " _refln_phase_calc"]
    for (h, k, l), a, s, f, p in zip(indices, fo2, sig_fo2, fc, phase_deg):
        lines.append(f"{h:4d}{k:4d}{l:4d} {a:13.2f} {s:13.2f} {f:13.2f} {p % 360.0:8.1f}")
    return "\n".join(lines) + "\n"


def fcf_text_from_arrays(title: str, cell: tuple[float, ...], group: sgtbx.space_group, fo_sq, f_calc,
                         amplitude_scale: float = 1.0) -> str:
    """LIST 6 text from cctbx arrays: observed F^2 with sigmas, complex Fc (times amplitude_scale)
    on the reflections both have."""
    fc = f_calc.common_set(fo_sq)
    fo = fo_sq.common_set(fc)
    values = fc.data().as_numpy_array()
    return write_fcf_text(title, cell, group, np.array(fo.indices()), fo.data().as_numpy_array(),
                          fo.sigmas().as_numpy_array(), np.abs(values) * amplitude_scale,
                          np.degrees(np.angle(values)))


def write_fcf(path: str | Path, *args, **kwargs) -> None:
    Path(path).write_text(write_fcf_text(*args, **kwargs))
