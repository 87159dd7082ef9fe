"""Space groups: from SHELX LATT/SYMM, CIF symbols or operators, and back to LATT/SYMM."""
from __future__ import annotations

from cctbx import sgtbx

# SHELX LATT codes (absolute value) <-> conventional centring letters.
LATT_TO_CENTRING = {1: "P", 2: "I", 3: "R", 4: "F", 5: "A", 6: "B", 7: "C"}
CENTRING_TO_LATT = {v: k for k, v in LATT_TO_CENTRING.items()}


class SymmetryError(ValueError):
    """A symmetry card or symbol that cctbx cannot turn into a space group."""


def parse_operator(text: str) -> sgtbx.rt_mx:
    """'-X, 1/2+Y, 0.5-Z' -> rt_mx. Accepts SHELX and CIF spellings."""
    cleaned = text.strip().strip("'\"").replace(" ", "")
    try:
        return sgtbx.rt_mx(cleaned.lower())
    except (RuntimeError, ValueError) as exc:
        raise SymmetryError(f"cannot read symmetry operator {text!r}") from exc


def from_latt_symm(latt: int, symm: list[str]) -> sgtbx.space_group:
    """Build the group SHELX describes: LATT n (n>0 adds an inversion centre at the origin)."""
    if abs(latt) not in LATT_TO_CENTRING:
        raise SymmetryError(f"LATT {latt} is not a SHELX lattice type (1..7, optionally negative)")
    group = sgtbx.space_group()
    try:
        group.expand_conventional_centring_type(LATT_TO_CENTRING[abs(latt)])
        if latt > 0:
            group.expand_inv(sgtbx.tr_vec((0, 0, 0)))
        for op in symm:
            group.expand_smx(parse_operator(op))
    except RuntimeError as exc:
        raise SymmetryError(f"LATT/SYMM do not form a space group: {exc}") from exc
    return group


def from_operators(ops: list[str]) -> sgtbx.space_group:
    group = sgtbx.space_group()
    try:
        for op in ops:
            group.expand_smx(parse_operator(op))
    except RuntimeError as exc:
        raise SymmetryError(f"symmetry operators do not form a space group: {exc}") from exc
    return group


def from_symbol(symbol: str) -> sgtbx.space_group:
    """Hermann-Mauguin ('P 21/c', 'P21/n', 'R -3:H'), Hall ('-P 2ybc') or number."""
    text = symbol.strip().strip("'\"")
    candidates = [text, text.replace(" ", ""), "Hall: " + text]
    for cand in candidates:
        try:
            return sgtbx.space_group_info(symbol=cand).group()
        except (RuntimeError, ValueError):
            continue
    raise SymmetryError(f"unknown space-group symbol {symbol!r}")


def to_latt_symm(group: sgtbx.space_group) -> tuple[int, list[str]]:
    """The LATT code and SYMM cards (identity and centring omitted) that reproduce `group`."""
    letter = group.conventional_centring_type_symbol()
    if letter not in CENTRING_TO_LATT:
        raise SymmetryError("lattice centring cannot be written as SHELX LATT")
    latt = CENTRING_TO_LATT[letter]
    ops = [group(0, 0, i) for i in range(1, group.n_smx())]
    if group.is_centric():
        if group.is_origin_centric():
            return latt, [shelx_symm(op) for op in ops]
        # Inversion centre off the origin: SHELX needs the centrosymmetric operators spelled out.
        ops += [group(0, 1, i) for i in range(group.n_smx())]
    return -latt, [shelx_symm(op) for op in ops]


def shelx_symm(op: sgtbx.rt_mx) -> str:
    return op.as_xyz().upper().replace(",", ", ")


def symbol(group: sgtbx.space_group) -> str:
    return str(sgtbx.space_group_info(group=group))
