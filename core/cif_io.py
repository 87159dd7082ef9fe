"""Small-molecule (core) CIF: read model, symmetry and reflections; write model CIFs.

Reads cell and symmetry (operators, Hall or H-M), atom sites with the aniso loop, embedded
`_shelx_res_file`/`_shelx_hkl_file` (and the IUCr `_iucr_refine_*_details` equivalents), and
`_refln`/`_diffrn_refln` loops with F^2 or F. A name such as `file.cif#block` selects a data block.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from aisolve.core import symmetry
from aisolve.core.contents import contents_disagreement
from aisolve.core.elements import element_from_label, hill_formula, normalise, parse_formula
from aisolve.core.errors import InputError
from aisolve.core.model import Atom, ReflectionData, Structure
from aisolve.core.shelx_hkl import read_hkl_text
from aisolve.core.shelx_ins import read_ins_text

_U_FROM_B = 1.0 / (8.0 * math.pi ** 2)


@dataclass
class CifContent:
    block: str
    structure: Structure | None
    reflections: ReflectionData | None
    res_text: str | None
    hkl_text: str | None


def split_block(path: str | Path) -> tuple[Path, str | None]:
    """'x.cif#blk' -> (Path('x.cif'), 'blk')."""
    text = str(path)
    if "#" in text:
        file_part, block = text.rsplit("#", 1)
        return Path(file_part), block or None
    return Path(text), None


def _value(block: gemmi.cif.Block, *tags: str) -> str | None:
    for tag in tags:
        v = block.find_value(tag)
        if v is not None and v not in ("?", "."):
            return gemmi.cif.as_string(v)
    return None


def _number(block: gemmi.cif.Block, *tags: str) -> float | None:
    v = _value(block, *tags)
    if v is None:
        return None
    x = gemmi.cif.as_number(v)
    return None if math.isnan(x) else x


def _esd(text: str) -> float | None:
    """'7.7727(9)' -> 0.0009."""
    if "(" not in text:
        return None
    mantissa, err = text.split("(", 1)
    err = err.rstrip(")")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    try:
        return int(err) * 10 ** -decimals
    except ValueError:
        return None


def _table(block: gemmi.cif.Block, prefix: str, required: list[str], optional: list[str]):
    """A loop as {column: list[str]} or None; accepts '_x_y' and '_x.y' spellings."""
    for p in (prefix + "_", prefix + "."):
        tab = block.find(p, required + ["?" + o for o in optional])
        if tab and len(tab) > 0:
            cols = {}
            for i, name in enumerate(required + optional):
                if tab.has_column(i):
                    cols[name] = [tab[r][i] for r in range(len(tab))]
            return cols
    return None


def _space_group(block: gemmi.cif.Block, source: str):
    ops = _table(block, "_space_group_symop", ["operation_xyz"], []) or \
        _table(block, "_symmetry_equiv", ["pos_as_xyz"], [])
    try:
        if ops:
            col = ops.get("operation_xyz") or ops.get("pos_as_xyz")
            return symmetry.from_operators([gemmi.cif.as_string(o) for o in col])
        hall = _value(block, "_space_group_name_Hall", "_symmetry_space_group_name_Hall")
        if hall:
            return symmetry.from_symbol("Hall: " + hall if not hall.lower().startswith("hall") else hall)
        hm = _value(block, "_space_group_name_H-M_alt", "_symmetry_space_group_name_H-M")
        if hm:
            return symmetry.from_symbol(hm)
        number = _value(block, "_space_group_IT_number", "_symmetry_Int_Tables_number")
        if number:
            return symmetry.from_symbol(number)
    except symmetry.SymmetryError as exc:
        raise InputError(source, f"data block {block.name}: {exc}") from None
    return None


def _cell(block: gemmi.cif.Block):
    names = ["_cell_length_a", "_cell_length_b", "_cell_length_c",
             "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"]
    vals = [_number(block, n) for n in names]
    if any(v is None for v in vals):
        return None, None
    esds = [(_esd(_value(block, n) or "") or 0.0) for n in names]
    return tuple(vals), tuple(esds)


def _atoms(block: gemmi.cif.Block, source: str) -> list[Atom]:
    tab = _table(block, "_atom_site", ["label", "fract_x", "fract_y", "fract_z"],
                 ["type_symbol", "occupancy", "U_iso_or_equiv", "B_iso_or_equiv", "adp_type",
                  "disorder_group"])
    if tab is None:
        return []
    atoms = []
    for i, label in enumerate(tab["label"]):
        label = gemmi.cif.as_string(label)
        if label in ("", "?", "."):
            continue
        sym = gemmi.cif.as_string(tab["type_symbol"][i]) if "type_symbol" in tab else label
        element = normalise(sym) or element_from_label(label)
        if element is None:
            raise InputError(source, f"atom {label}: unknown element {sym!r}")
        xyz = tuple(gemmi.cif.as_number(tab[c][i]) for c in ("fract_x", "fract_y", "fract_z"))
        if any(math.isnan(v) for v in xyz):
            raise InputError(source, f"atom {label}: missing fractional coordinate")
        occ = gemmi.cif.as_number(tab["occupancy"][i]) if "occupancy" in tab else 1.0
        uiso = gemmi.cif.as_number(tab["U_iso_or_equiv"][i]) if "U_iso_or_equiv" in tab else math.nan
        if math.isnan(uiso) and "B_iso_or_equiv" in tab:
            uiso = gemmi.cif.as_number(tab["B_iso_or_equiv"][i]) * _U_FROM_B
        part = 0
        if "disorder_group" in tab:
            g = gemmi.cif.as_string(tab["disorder_group"][i])
            part = int(g) if g.lstrip("-").isdigit() else 0
        atoms.append(Atom(label=label, element=element, xyz=xyz,
                          occupancy=1.0 if math.isnan(occ) else occ,
                          uiso=0.05 if math.isnan(uiso) else uiso, part=part))
    _apply_aniso(block, atoms, source)
    return atoms


def _apply_aniso(block: gemmi.cif.Block, atoms: list[Atom], source: str) -> None:
    by_label = {a.label: a for a in atoms}
    for kind, scale in (("U", 1.0), ("B", _U_FROM_B)):
        names = [f"{kind}_11", f"{kind}_22", f"{kind}_33", f"{kind}_23", f"{kind}_13", f"{kind}_12"]
        tab = _table(block, "_atom_site_aniso", ["label"] + names, [])
        if tab is None:
            continue
        for i, label in enumerate(tab["label"]):
            label = gemmi.cif.as_string(label)
            if label in ("", "?", "."):  # placeholder row (seen in Jana CIFs)
                continue
            atom = by_label.get(label)
            if atom is None:
                raise InputError(source, f"aniso loop names atom {label!r} that is not in the atom_site loop")
            u = tuple(gemmi.cif.as_number(tab[n][i]) * scale for n in names)
            if not any(math.isnan(v) for v in u):
                atom.uaniso, atom.uiso = u, None
        return


def _reflections_from_loop(block: gemmi.cif.Block) -> ReflectionData | None:
    candidates = [
        ("_refln", ["index_h", "index_k", "index_l", "F_squared_meas"], "F_squared_sigma", True),
        ("_refln", ["index_h", "index_k", "index_l", "intensity_meas"], "intensity_sigma", True),
        ("_refln", ["index_h", "index_k", "index_l", "F_meas"], "F_sigma", False),
        ("_diffrn_refln", ["index_h", "index_k", "index_l", "intensity_net"], "intensity_sigma", True),
        ("_diffrn_refln", ["index_h", "index_k", "index_l", "intensity_net"], "intensity_u", True),
    ]
    fallback = None  # a loop without sigmas, used only if no loop has them
    for prefix, req, sig, is_int in candidates:
        tab = _table(block, prefix, req, [sig])
        if tab is None:
            continue
        hkl = np.array([[int(gemmi.cif.as_number(tab[c][r])) for c in req[:3]]
                        for r in range(len(tab[req[0]]))], dtype=np.int32)
        vals = np.array([gemmi.cif.as_number(v) for v in tab[req[3]]])
        sigmas = np.array([gemmi.cif.as_number(v) for v in tab[sig]]) if sig in tab else np.full(len(vals), np.nan)
        keep = ~np.isnan(vals)
        refl = ReflectionData(indices=hkl[keep], data=vals[keep], sigmas=sigmas[keep],
                              is_intensity=is_int, hklf=4 if is_int else 3)
        if sig in tab:
            return refl
        if fallback is None:
            refl.warnings.append("no sigmas in the reflection loop")
            fallback = refl
    return fallback


def _block_reflections(block: gemmi.cif.Block, source: str, hklf: int) -> tuple[ReflectionData | None, str | None]:
    hkl_text = _value(block, "_shelx_hkl_file", "_iucr_refine_reflections_details")
    if hkl_text:
        return read_hkl_text(hkl_text.strip("\n") + "\n", f"{source} (_shelx_hkl_file)", hklf), hkl_text
    refl = _reflections_from_loop(block)
    if refl is None:
        fcf = _value(block, "_iucr_refine_fcf_details")
        if fcf:
            try:
                sub = gemmi.cif.read_string(fcf)
            except (RuntimeError, ValueError) as exc:
                raise InputError(source, f"embedded _iucr_refine_fcf_details is not CIF: {exc}") from None
            for b in sub:
                refl = _reflections_from_loop(b)
                if refl is not None:
                    break
    return refl, None


def read_cif(path: str | Path) -> CifContent:
    path, block_name = split_block(path)
    source = str(path)
    try:
        doc = gemmi.cif.read(str(path))
    except (RuntimeError, ValueError) as exc:
        msg = str(exc)
        line = None
        if ":" in msg:
            head = msg.split(":")
            for tok in head[1:3]:
                if tok.strip().isdigit():
                    line = int(tok.strip())
                    break
        raise InputError(source, f"not a readable CIF: {msg.split(':', 2)[-1].strip()}", line) from None
    except OSError as exc:
        raise InputError(source, f"cannot read file: {exc}") from None
    if len(doc) == 0:
        raise InputError(source, "no data block in CIF")
    if block_name is not None:
        block = doc.find_block(block_name)
        if block is None:
            raise InputError(source, f"no data block named {block_name!r} "
                                     f"(blocks: {', '.join(b.name for b in doc)})")
        blocks = [block]
    else:
        blocks = list(doc)
    chosen = next((b for b in blocks if _table(b, "_atom_site", ["label", "fract_x"], [])), None)
    refl_block = next((b for b in blocks if _value(b, "_shelx_hkl_file", "_iucr_refine_reflections_details",
                                                   "_iucr_refine_fcf_details")
                       or _table(b, "_refln", ["index_h"], []) or _table(b, "_diffrn_refln", ["index_h"], [])),
                      None)
    main = chosen or refl_block or blocks[0]
    res_text = _value(main, "_shelx_res_file", "_iucr_refine_instructions_details")
    structure = _structure(main, source, res_text) if chosen or res_text else None
    hklf = structure.hklf if structure and structure.hklf in (3, 4, 5, 6) else 4
    reflections, hkl_text = (None, None)
    if refl_block is not None:
        reflections, hkl_text = _block_reflections(refl_block, source, hklf)
        sym_block = refl_block if _cell(refl_block)[0] else main
        cell, _ = _cell(sym_block)
        if reflections is not None:
            reflections.source = source
            reflections.cell = cell or (structure.cell if structure else None)
            reflections.space_group = _space_group(sym_block, source) or \
                (structure.space_group if structure else None)
            reflections.wavelength = _number(sym_block, "_diffrn_radiation_wavelength")
    if structure is None and reflections is None:
        raise InputError(source, f"data block {main.name}: no atoms and no reflections in CIF")
    return CifContent(main.name, structure, reflections, res_text, hkl_text)


def _structure(block: gemmi.cif.Block, source: str, res_text: str | None) -> Structure:
    cell, esd = _cell(block)
    group = _space_group(block, source)
    atoms = _atoms(block, source) if cell else []
    if res_text and not atoms:
        # A CIF whose model only lives in the embedded SHELX file.
        st = read_ins_text(res_text, f"{source} (_shelx_res_file)")
        st.source = source
        return st
    if cell is None:
        raise InputError(source, f"data block {block.name}: no _cell_length_a/b/c and angles")
    if group is None:
        raise InputError(source, f"data block {block.name}: no space-group symbol or symmetry operators")
    contents: dict[str, float] = {}
    formula = _value(block, "_chemical_formula_sum")
    z = _number(block, "_cell_formula_units_Z")
    warnings = []
    if formula:
        try:
            per_unit = parse_formula(formula)
            if z is None:
                z = _z_from_volume(cell, per_unit)
                warnings.append(f"no _cell_formula_units_Z: Z = {z:g} estimated from the cell volume")
            contents = {el: n * z for el, n in per_unit.items()}
        except ValueError as exc:
            warnings.append(str(exc))
    st = Structure(cell=cell, space_group=group, title=block.name, cell_esd=esd, z=z,
                   wavelength=_number(block, "_diffrn_radiation_wavelength") or 0.71073,
                   cell_contents=contents, atoms=atoms, hklf=4, source=source, warnings=warnings,
                   temperature=_number(block, "_diffrn_ambient_temperature"))
    if res_text:
        try:
            res = read_ins_text(res_text, f"{source} (_shelx_res_file)")
            st.hklf, st.hklf_params = res.hklf, res.hklf_params
        except InputError as exc:
            st.warnings.append(f"embedded SHELX file unreadable: {exc}")
    if not atoms:
        raise InputError(source, f"data block {block.name}: CIF has no atoms (no _atom_site loop)")
    _drop_symmetry_copies(st)
    disagreement = contents_disagreement(st)
    if disagreement:
        st.warnings.append(disagreement)
    return st


def _drop_symmetry_copies(st: Structure) -> None:
    """Removes atoms that repeat an earlier atom's symmetry copy (same element, together more than
    a full site), with a warning. Some CIFs list the generated half of a centrosymmetric molecule
    (COD 2000056: C1B*, N1B*); kept, they double the density there."""
    from aisolve.core.geometry import symmetry_duplicates
    atoms = st.atoms
    copies = [(j, i, d) for j, i, d in symmetry_duplicates(st.symmetry, [a.xyz for a in atoms])
              if atoms[i].element == atoms[j].element and atoms[i].occupancy + atoms[j].occupancy > 1.01]
    if not copies:
        return
    for j, i, d in copies:
        st.warnings.append(f"atom {atoms[i].label} is a symmetry copy of {atoms[j].label} ({d:.2f} A): left out")
    dropped = {i for _, i, _ in copies}
    st.atoms = [a for k, a in enumerate(atoms) if k not in dropped]


def _z_from_volume(cell, per_unit: dict[str, float]) -> float:
    """Formula units per cell from about 18 A^3 per non-H atom."""
    from cctbx import uctbx
    n_non_h = sum(n for el, n in per_unit.items() if el not in ("H", "D")) or 1.0
    return float(max(1, round(uctbx.unit_cell(cell).volume() / (18.0 * n_non_h))))


# ---------------------------------------------------------------------------------------------
def write_cif_text(st: Structure, block_name: str | None = None, res_text: str | None = None,
                   hkl_text: str | None = None, pairs: dict[str, object] | None = None,
                   reflections: ReflectionData | None = None) -> str:
    """A coreCIF data block with the model; `pairs` adds items such as refinement figures and
    `reflections` a `_refln` loop (F^2 or F, with sigmas)."""
    doc = gemmi.cif.Document()
    block = doc.add_new_block(_block_name(block_name or st.title))
    a, b, c, al, be, ga = st.cell
    block.set_pair("_audit_creation_method", gemmi.cif.quote("aisolve"))
    for tag, val in zip(("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"),
                        (a, b, c, al, be, ga)):
        block.set_pair(f"_cell_{tag}", f"{val:.5f}")
    block.set_pair("_cell_volume", f"{st.unit_cell.volume():.3f}")
    z = _formula_units(st)
    if z is not None:
        block.set_pair("_cell_formula_units_Z", f"{z:g}")
    if st.cell_contents:
        # CIF gives the formula per formula unit; the model holds the contents of the cell.
        per_unit = {el: n / (z or 1) for el, n in st.cell_contents.items()}
        block.set_pair("_chemical_formula_sum", gemmi.cif.quote(hill_formula(per_unit)))
    block.set_pair("_diffrn_radiation_wavelength", f"{st.wavelength:.5f}")
    info = st.space_group.type().lookup_symbol()
    block.set_pair("_space_group_name_H-M_alt", gemmi.cif.quote(info))
    block.set_pair("_space_group_name_Hall", gemmi.cif.quote(st.space_group.type().hall_symbol()))
    block.set_pair("_space_group_IT_number", str(st.space_group.type().number()))
    loop = block.init_loop("_space_group_symop_", ["id", "operation_xyz"])
    for i, op in enumerate(st.space_group.all_ops(), start=1):
        loop.add_row([str(i), gemmi.cif.quote(op.as_xyz())])
    for key, val in (pairs or {}).items():
        block.set_pair(key, val if isinstance(val, str) else f"{val:.5g}")
    loop = block.init_loop("_atom_site_", ["label", "type_symbol", "fract_x", "fract_y", "fract_z",
                                           "U_iso_or_equiv", "adp_type", "occupancy", "calc_flag",
                                           "disorder_group"])
    uc = st.unit_cell
    for at in st.atoms:
        loop.add_row([at.label, at.element, f"{at.xyz[0]:.6f}", f"{at.xyz[1]:.6f}", f"{at.xyz[2]:.6f}",
                      f"{at.u_equivalent(uc):.5f}", "Uani" if at.uaniso else "Uiso", f"{at.occupancy:.4f}",
                      "R" if at.riding_u is not None or at.afix else "d", str(at.part) if at.part else "."])
    aniso = [at for at in st.atoms if at.uaniso is not None]
    if aniso:
        loop = block.init_loop("_atom_site_aniso_", ["label", "U_11", "U_22", "U_33", "U_23", "U_13", "U_12"])
        for at in aniso:
            loop.add_row([at.label] + [f"{u:.5f}" for u in at.uaniso])
    if res_text:
        block.set_pair("_shelx_res_file", gemmi.cif.quote(res_text.rstrip("\n") + "\n"))
    if hkl_text:
        block.set_pair("_shelx_hkl_file", gemmi.cif.quote(hkl_text.rstrip("\n") + "\n"))
    if reflections is not None:
        kind = ("F_squared_meas", "F_squared_sigma") if reflections.is_intensity else ("F_meas", "F_sigma")
        loop = block.init_loop("_refln_", ["index_h", "index_k", "index_l", *kind])
        for (h, k, l), v, sig in zip(reflections.indices, reflections.data, reflections.sigmas):
            loop.add_row([str(h), str(k), str(l), f"{v:.6g}", f"{sig:.6g}"])
    return doc.as_string(gemmi.cif.Style.Pdbx)


def _formula_units(st: Structure) -> float | None:
    """Z for the CIF: the model's Z when it divides the cell contents evenly, else 1."""
    if st.z is None:
        return None
    whole = all(abs(n / st.z - round(n / st.z)) < 1e-6 for n in st.cell_contents.values())
    return st.z if whole else 1.0


def _block_name(name: str) -> str:
    words = name.split()
    cleaned = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in words[0]) if words else ""
    return cleaned or "aisolve"
