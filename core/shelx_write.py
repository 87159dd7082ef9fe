"""Write a Structure as a SHELX .ins/.res file (iotbx's writer drops AFIX/END and writes float UNIT)."""
from __future__ import annotations

import math

from aisolve.core import symmetry
from aisolve.core.model import Atom, Structure
from aisolve.core.shelx_ins import decode_parameter

MAX_LABEL = 4


class WriteError(ValueError):
    """The structure cannot be expressed as a SHELX file (e.g. a label longer than 4 characters)."""


def _num(v: float) -> str:
    """Shortest plain decimal of v with up to 6 decimals: CELL and ZERR keep what the file said."""
    text = f"{v:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _param(value: float, code: float | None, fvar: list[float], default_fixed: bool = False) -> float:
    """The number to write: the original SHELX code if it still means `value`, else the value."""
    if code is not None:
        try:
            if math.isclose(decode_parameter(code, fvar), value, abs_tol=1e-7):
                return code
        except ValueError:
            pass
    return 10.0 + value if default_fixed else value


def _unit_counts(st: Structure, sfac: list[str]) -> list[int]:
    model = None
    counts = []
    for el in sfac:
        n = st.cell_contents.get(el)
        if n is None:  # element only the atoms use: count it from the model
            model = model or st.model_formula_per_cell()
            n = model.get(el, 0.0)
        counts.append(max(int(round(n)), 1 if n > 0 else 0))
    return counts


def _atom_lines(a: Atom, sfac_index: int, fvar: list[float], site_order: int) -> list[str]:
    if len(a.label) > MAX_LABEL:
        raise WriteError(f"atom label {a.label!r} is longer than {MAX_LABEL} characters")
    c = a.shelx_codes
    x, y, z = (_param(v, c.get(k), fvar) for k, v in zip("xyz", a.xyz))
    sof = _param(a.occupancy / site_order, c.get("sof"), fvar, default_fixed=True)
    head = f"{a.label:<5}{sfac_index:>3}{x:>12.6f}{y:>12.6f}{z:>12.6f}{sof:>12.5f}"
    if a.uaniso is not None:
        u = [_param(v, c.get(k), fvar) for k, v in zip(("U11", "U22", "U33", "U23", "U13", "U12"), a.uaniso)]
        return [f"{head}{u[0]:>11.5f}{u[1]:>11.5f} =", f"    {u[2]:>11.5f}{u[3]:>11.5f}{u[4]:>11.5f}{u[5]:>11.5f}"]
    if a.riding_u is not None:
        return [f"{head}{-a.riding_u:>11.5f}"]
    uiso = _param(a.uiso if a.uiso is not None else 0.05, c.get("U"), fvar)
    return [f"{head}{uiso:>11.5f}"]


def write_ins_text(st: Structure) -> str:
    """The SHELX text of `st`; raises WriteError when SHELX cannot express it."""
    sfac = st.sfac
    index = {el: i + 1 for i, el in enumerate(sfac)}
    fvar = st.fvar or [1.0]
    try:
        latt, symm = symmetry.to_latt_symm(st.space_group)
    except symmetry.SymmetryError as exc:
        raise WriteError(str(exc)) from None
    out = [f"TITL {st.title}"]
    out.append("CELL " + " ".join(_num(v) for v in (st.wavelength, *st.cell)))
    z = st.z if st.z is not None else st.space_group.order_z()
    esd = st.cell_esd or (0.0,) * 6
    out.append(f"ZERR {_num(z)} " + " ".join(_num(e) for e in esd))
    out.append(f"LATT {latt}")
    out += [f"SYMM {op}" for op in symm]
    # Short-form SFAC must come as one card per run of short elements to keep the order.
    run: list[str] = []
    for el in sfac:
        if el in st.sfac_long:
            if run:
                out.append("SFAC " + " ".join(run))
                run = []
            out.append(f"SFAC {el} {st.sfac_long[el]}")
        else:
            run.append(el)
    if run:
        out.append("SFAC " + " ".join(run))
    out += st.disp_lines
    out.append("UNIT " + " ".join(str(n) for n in _unit_counts(st, sfac)))
    if st.temperature is not None and not any(h.upper().startswith("TEMP") for h in st.header_lines):
        out.append(f"TEMP {st.temperature:g}")
    out += st.header_lines
    for i in range(0, len(fvar), 7):
        out.append("FVAR " + " ".join(f"{v:.5f}" for v in fvar[i:i + 7]))
    part, part_params, afix, residue = 0, "", 0, ""
    for a in st.atoms:
        out += a.preceding_lines
        if a.residue != residue:
            out.append(f"RESI {a.residue or 0}")
            residue = a.residue
        if (a.part, a.part_params) != (part, part_params):
            if afix != 0:
                out.append("AFIX 0")
                afix = 0
            out.append(f"PART {a.part} {a.part_params}".rstrip())
            part, part_params = a.part, a.part_params
        if a.afix != afix or a.afix_start:
            if afix != 0 and a.afix != 0:
                out.append("AFIX 0")
            out.append(f"AFIX {a.afix} {a.afix_params}".rstrip())
            afix = a.afix
        out += _atom_lines(a, index[a.element], fvar, st.site_symmetry_order(a.xyz))
    if afix != 0:
        out.append("AFIX 0")
    if part != 0:
        out.append("PART 0")
    if residue:
        out.append("RESI 0")
    out += st.trailing_lines
    out.append(f"HKLF {st.hklf if st.hklf is not None else 4} {st.hklf_params}".rstrip())
    out.append("END")
    if st.peaks:
        out.append("")
        for q in st.peaks:
            x, y, z = q.xyz
            h = q.peak_height or 0.0
            sof = 10 + q.occupancy / st.site_symmetry_order(q.xyz)
            out.append(f"{q.label:<5}{1:>3}{x:>12.6f}{y:>12.6f}{z:>12.6f}{sof:>12.5f}"
                       f"{0.05:>11.5f}{h:>9.2f}")
    return "\n".join(out) + "\n"
