"""SHELX .ins/.res: read into a Structure and write files that SHELXL and Olex2 accept.

What is interpreted: TITL, CELL, ZERR, LATT, SYMM, SFAC (short and long form), DISP, UNIT, FVAR,
TEMP, atoms (free-variable-coded parameters, '=' continuations, riding Uiso), PART, AFIX, RESI,
HKLF, END and the Q-peaks SHELXL lists after END. Every other card (restraints, L.S., WGHT, REM...)
is kept verbatim in its place so that a file read and written again says the same thing.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from cctbx import uctbx

from aisolve.core import symmetry
from aisolve.core.elements import normalise
from aisolve.core.errors import InputError
from aisolve.core.model import Atom, Structure

# Every SHELXL/SHELXS/SHELXT instruction (first four characters, before any _suffix).
INSTRUCTIONS = frozenset("""
ABIN ACTA AFIX ANIS ANSC ANSR BASF BEDE BIND BLOC BOND BUMP CELL CGLS CHIV CONF CONN CRED DAMP DANG
DEFS DELU DFIX DISP EADP END EQIV ESEL EGEN EXTI EXYZ FEND FLAT FMAP FRAG FREE FVAR GRID HFIX HKLF
HOPE HTAB INIT ISOR LATT LAUE LIST L.S. LONE MERG MOLE MORE MOVE MPLA NCSY NEUT OMIT PART PATT PHAN
PLAN PRIG PSEE REM RESI RIGU RTAB SADI SAME SFAC SHEL SIMU SIZE SPEC SPIN STIR SUMP SWAT SYMM TEMP
TEXP TIME TITL TREF TWIN TWST UNIT VECT WGHT WIGL WPDB XNPD ZERR
""".split())

_Q_LABEL = re.compile(r"^Q\d+$", re.IGNORECASE)
_MAX_LABEL = 4


@dataclass
class _Line:
    number: int  # first physical line
    text: str  # logical line, continuations joined

    @property
    def tokens(self) -> list[str]:
        toks = self.text.split()
        # 'HKLF4' (seen in real files) means 'HKLF 4'.
        if toks and toks[0][:4].upper() in INSTRUCTIONS and re.fullmatch(r"-?\d+", toks[0][4:]):
            toks[0:1] = [toks[0][:4], toks[0][4:]]
        return toks

    @property
    def is_comment(self) -> bool:
        """SHELX treats a line that starts with a blank (and continues nothing) as a comment."""
        return self.text[:1] in (" ", "\t")

    @property
    def keyword(self) -> str:
        toks = self.tokens
        return toks[0].upper().split("_")[0][:4] if toks else ""


def _logical_lines(text: str) -> list[_Line]:
    """Join '=' continuation lines (not for REM), keep the first line number of each."""
    out: list[_Line] = []
    physical = text.splitlines()
    i = 0
    while i < len(physical):
        start = i + 1
        line = physical[i].rstrip()
        i += 1
        if not line.upper().startswith("REM"):
            while line.endswith("=") and i < len(physical):
                line = line[:-1] + " " + physical[i].strip()
                i += 1
            if line.endswith("="):
                line = line[:-1]
        out.append(_Line(start, line))
    return out


def decode_parameter(raw: float, fvar: list[float]) -> float:
    """SHELX 10m+p coding: |raw|<5 free; m=1 fixed at p; m>1 tied to free variable m."""
    if abs(raw) < 5:
        return raw
    m = int(round(abs(raw) / 10.0))
    p = abs(raw) - 10 * m
    if m == 1:
        return math.copysign(p, raw)
    if m > len(fvar):
        raise ValueError(f"free variable {m} is used but FVAR defines only {len(fvar)}")
    fv = fvar[m - 1]
    return p * fv if raw > 0 else p * (1.0 - fv)


def _float(tok: str, line: _Line, source: str, what: str) -> float:
    try:
        return float(tok)
    except ValueError:
        raise InputError(source, f"{what}: {tok!r} is not a number", line.number) from None


class _Reader:
    def __init__(self, text: str, source: str):
        self.source = source
        self.text = text
        self.title = ""
        self.cell: tuple[float, ...] | None = None
        self.wavelength = 0.71073
        self.cell_esd = None
        self.z = None
        self.latt = 1  # SHELX default: centrosymmetric primitive
        self.symm: list[str] = []
        self.symm_line: int | None = None  # last LATT/SYMM line, for errors about the group
        self.sfac: list[str] = []
        self.sfac_long: dict[str, str] = {}
        self.disp: list[str] = []
        self.unit: list[float] | None = None
        self.fvar: list[float] = []
        self.hklf: int | None = None
        self.hklf_params = ""
        self.temperature = None
        self.header: list[str] = []
        self.pending: list[str] = []
        self.atoms: list[Atom] = []
        self.peaks: list[Atom] = []
        self.part, self.part_params = 0, ""
        self.afix, self.afix_params, self.afix_new = 0, "", False
        self.residue = ""
        self.warnings: list[str] = []
        self.raw_atoms: list[tuple[Atom, list[float], _Line]] = []

    def error(self, line: _Line, problem: str) -> InputError:
        return InputError(self.source, problem, line.number)

    def run(self) -> Structure:
        lines = _logical_lines(self.text)
        ended = False
        for line in lines:
            toks = line.tokens
            if not toks:
                continue
            if ended:
                # After END only the Q-peaks that SHELXL appends are of interest.
                if _Q_LABEL.match(toks[0]) and len(toks) >= 5 and self._looks_like_atom(toks):
                    self._atom(line)
                continue
            kw = line.keyword
            if line.is_comment and kw not in INSTRUCTIONS and not self._looks_like_atom(toks):
                self._raw(line)
                continue
            handler = getattr(self, "_card_" + kw.replace(".", "_"), None) if kw in INSTRUCTIONS else None
            if handler is not None:
                if handler(line) == "END":
                    ended = True
            elif kw in INSTRUCTIONS or toks[0].startswith("+"):
                self._raw(line)
            elif self._looks_like_atom(toks):
                self._atom(line)
            else:
                raise self.error(line, f"not a SHELX instruction or atom: {line.text.strip()[:60]!r}")
        return self._finish()

    # -- cards -------------------------------------------------------------------------------------
    def _raw(self, line: _Line) -> None:
        (self.pending if self.atoms or self.peaks else self.header).append(line.text.rstrip())

    def _card_TITL(self, line: _Line):
        if self.title:
            self._raw(line)
        else:
            self.title = line.text.strip()[4:].strip() or "untitled"

    def _card_CELL(self, line: _Line):
        vals = [_float(t, line, self.source, "CELL") for t in line.tokens[1:]]
        if len(vals) != 7:
            raise self.error(line, f"CELL needs wavelength and six cell parameters, found {len(vals)} numbers")
        self.wavelength = vals[0]
        self.cell = tuple(vals[1:])
        a, b, c, al, be, ga = self.cell
        if min(a, b, c) <= 0 or not all(0 < x < 180 for x in (al, be, ga)):
            raise self.error(line, f"impossible cell {self.cell}")

    def _card_ZERR(self, line: _Line):
        vals = [_float(t, line, self.source, "ZERR") for t in line.tokens[1:]]
        if len(vals) != 7:
            raise self.error(line, f"ZERR needs Z and six esds, found {len(vals)} numbers")
        self.z, self.cell_esd = vals[0], tuple(vals[1:])

    def _card_LATT(self, line: _Line):
        toks = line.tokens
        try:
            self.latt = int(toks[1])
        except (IndexError, ValueError):
            raise self.error(line, "LATT needs an integer lattice type") from None
        if abs(self.latt) not in symmetry.LATT_TO_CENTRING:
            raise self.error(line, f"LATT {self.latt}: lattice type must be 1..7 or -1..-7")
        self.symm_line = line.number

    def _card_SYMM(self, line: _Line):
        op = line.text.strip()[4:].strip()
        try:
            symmetry.parse_operator(op)
        except symmetry.SymmetryError as exc:
            raise self.error(line, str(exc)) from None
        self.symm.append(op)
        self.symm_line = line.number

    def _card_SFAC(self, line: _Line):
        toks = line.tokens[1:]
        if not toks:
            raise self.error(line, "SFAC without element")
        long_form = len(toks) > 1 and _is_number(toks[1])
        labels = toks[:1] if long_form else toks
        for lab in labels:
            el = normalise(lab)
            if el is None:
                raise self.error(line, f"unknown element {lab!r} in SFAC")
            if el in self.sfac:
                raise self.error(line, f"element {el} appears twice in SFAC")
            self.sfac.append(el)
            if long_form:
                self.sfac_long[el] = " ".join(toks[1:])

    def _card_DISP(self, line: _Line):
        self.disp.append(line.text.strip())

    def _card_UNIT(self, line: _Line):
        self.unit = [_float(t, line, self.source, "UNIT") for t in line.tokens[1:]]
        if len(self.unit) != len(self.sfac):
            raise self.error(line, f"UNIT gives {len(self.unit)} numbers for {len(self.sfac)} SFAC elements")

    def _card_FVAR(self, line: _Line):
        self.fvar += [_float(t, line, self.source, "FVAR") for t in line.tokens[1:]]

    def _card_TEMP(self, line: _Line):
        toks = line.tokens
        if len(toks) > 1 and _is_number(toks[1]):
            self.temperature = float(toks[1])
        self._raw(line)

    def _card_PART(self, line: _Line):
        toks = line.tokens
        try:
            self.part = int(float(toks[1])) if len(toks) > 1 else 0
        except ValueError:
            raise self.error(line, "PART needs an integer") from None
        self.part_params = " ".join(toks[2:])

    def _card_AFIX(self, line: _Line):
        toks = line.tokens
        try:
            self.afix = int(float(toks[1])) if len(toks) > 1 else 0
        except ValueError:
            raise self.error(line, "AFIX needs an integer code") from None
        self.afix_params = " ".join(toks[2:])
        self.afix_new = self.afix != 0

    def _card_RESI(self, line: _Line):
        rest = " ".join(line.tokens[1:])
        # 'RESI 0' (or bare RESI) leaves the residue.
        self.residue = "" if rest in ("", "0") else rest

    def _card_HKLF(self, line: _Line):
        toks = line.tokens
        try:
            self.hklf = int(float(toks[1]))
        except (IndexError, ValueError):
            raise self.error(line, "HKLF needs the data code (3, 4 or 5...)") from None
        self.hklf_params = " ".join(toks[2:])
        return "END"  # nothing after HKLF is read by SHELXL but the Q-peaks after END

    def _card_END(self, line: _Line):
        return "END"

    # -- atoms -------------------------------------------------------------------------------------
    @staticmethod
    def _looks_like_atom(toks: list[str]) -> bool:
        return (len(toks) >= 5 and toks[0][0].isalpha() and re.fullmatch(r"-?\d+", toks[1]) is not None)

    def _atom(self, line: _Line) -> None:
        toks = line.tokens
        label = toks[0]
        nums = [_float(t, line, self.source, f"atom {label}") for t in toks[2:]]
        sfac_index = int(toks[1])
        is_peak = _Q_LABEL.match(label) is not None
        if not is_peak and not (1 <= sfac_index <= len(self.sfac)):
            raise self.error(line, f"atom {label} refers to SFAC {sfac_index}, but SFAC lists "
                                   f"{len(self.sfac)} elements")
        if len(nums) not in (3, 4, 5, 6, 10, 11):
            raise self.error(line, f"atom {label}: {len(nums)} numbers after the SFAC index "
                                   "(expected x y z [sof [U or U11..U12]])")
        atom = Atom(label=label, element="Q" if is_peak else self.sfac[sfac_index - 1],
                    xyz=(0.0, 0.0, 0.0), part=self.part, afix=self.afix, afix_start=self.afix_new,
                    afix_params=self.afix_params, residue=self.residue,
                    part_params=self.part_params)
        self.afix_new = False
        if is_peak:
            if len(nums) >= 6:
                atom.peak_height = nums[-1]
                nums = nums[:-1]
            else:
                atom.peak_height = 0.0
            # A peak belongs to no PART, AFIX group or residue, whatever precedes it.
            atom.afix, atom.afix_start, atom.afix_params = 0, False, ""
            atom.part, atom.part_params, atom.residue = 0, "", ""
            self.peaks.append(atom)
        else:
            atom.preceding_lines, self.pending = self.pending, []
            self.atoms.append(atom)
        self.raw_atoms.append((atom, nums, line))

    def _decode_atoms(self) -> None:
        fvar = self.fvar or [1.0]
        last_non_h: Atom | None = None
        uc = uctbx.unit_cell(self.cell)
        for atom, nums, line in self.raw_atoms:
            try:
                names = ["x", "y", "z", "sof"]
                raw = dict(zip(names, nums[:4]))
                raw.setdefault("sof", 11.0)
                decoded = {k: decode_parameter(v, fvar) for k, v in raw.items()}
                atom.shelx_codes = {k: v for k, v in raw.items() if abs(v) >= 5}
                atom.xyz = (decoded["x"], decoded["y"], decoded["z"])
                atom.occupancy = decoded["sof"]
                u = nums[4:]
                if len(u) == 6:
                    atom.uaniso = tuple(decode_parameter(v, fvar) for v in u)
                    atom.uiso = None
                    for name, v in zip(("U11", "U22", "U33", "U23", "U13", "U12"), u):
                        if abs(v) >= 5:
                            atom.shelx_codes[name] = v
                elif len(u) == 1 and -5 < u[0] < -0.5:
                    atom.riding_u = -u[0]
                    pivot = last_non_h
                    atom.uiso = atom.riding_u * (pivot.u_equivalent(uc) if pivot else 0.05)
                elif len(u) == 1:
                    atom.uiso = decode_parameter(u[0], fvar)
                    if abs(u[0]) >= 5:
                        atom.shelx_codes["U"] = u[0]
                else:
                    atom.uiso = 0.05
            except ValueError as exc:
                raise self.error(line, f"atom {atom.label}: {exc}") from None
            if not atom.is_peak and atom.element not in ("H", "D"):
                last_non_h = atom

    def _to_chemical_occupancy(self, group) -> None:
        probe = Structure(cell=self.cell, space_group=group)
        for atom in self.atoms + self.peaks:
            atom.occupancy *= probe.site_symmetry_order(atom.xyz)

    def _finish(self) -> Structure:
        if self.cell is None:
            raise InputError(self.source, "no CELL card: the unit cell is unknown")
        if not self.sfac:
            raise InputError(self.source, "no SFAC card: the elements are unknown")
        try:
            group = symmetry.from_latt_symm(self.latt, self.symm)
        except symmetry.SymmetryError as exc:
            raise InputError(self.source, f"LATT/SYMM: {exc}", self.symm_line) from None
        self._decode_atoms()
        self._to_chemical_occupancy(group)
        contents: dict[str, float] = {}
        if self.unit is not None:
            contents = {el: n for el, n in zip(self.sfac, self.unit)}
        else:
            self.warnings.append("no UNIT card: cell contents unknown")
        st = Structure(cell=self.cell, space_group=group, title=self.title or "untitled",
                       wavelength=self.wavelength, cell_esd=self.cell_esd, z=self.z,
                       cell_contents=contents, atoms=self.atoms, peaks=self.peaks,
                       fvar=self.fvar or [1.0], hklf=self.hklf, temperature=self.temperature,
                       header_lines=self.header, trailing_lines=self.pending,
                       sfac_long=self.sfac_long, disp_lines=self.disp, hklf_params=self.hklf_params,
                       source=self.source, warnings=self.warnings)
        # SFAC order matters for files we write back: keep every SFAC element, even with UNIT 0.
        for el in self.sfac:
            st.cell_contents.setdefault(el, 0.0)
        return st


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def read_ins_text(text: str, source: str = "<ins>") -> Structure:
    return _Reader(text, source).run()


def read_ins(path: str | Path) -> Structure:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror}") from None
    return read_ins_text(text, str(path))
