"""Chemical elements: symbols, atomic numbers, normalisation of SHELX/CIF labels."""
from __future__ import annotations

import re

SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf"
).split()
ATOMIC_NUMBER = {s: i + 1 for i, s in enumerate(SYMBOLS)}
# Deuterium is refined as its own SFAC type in neutron and some X-ray work.
ATOMIC_NUMBER["D"] = 1
_BY_UPPER = {s.upper(): s for s in ATOMIC_NUMBER}

_LEADING_SYMBOL = re.compile(r"^([A-Za-z]{1,2})")


def normalise(symbol: str) -> str | None:
    """'CL', 'cl', 'Cl' -> 'Cl'; ionic or labelled forms like 'O2-', 'Fe3+' -> 'O', 'Fe'.

    Returns None for anything that is not an element.
    """
    s = symbol.strip()
    if s.upper() in _BY_UPPER:
        return _BY_UPPER[s.upper()]
    m = _LEADING_SYMBOL.match(s)
    if not m:
        return None
    letters = m.group(1)
    rest = s[len(letters):]
    # 'Fe3+' or 'O2-' are charges; 'C12' would be a label, not an element.
    if rest and not re.fullmatch(r"\d*[+-]\d*", rest):
        return None
    return _BY_UPPER.get(letters.upper())


def element_from_label(label: str) -> str | None:
    """Best guess of the element from an atom label such as 'Cl1A' or 'C12' (two letters first)."""
    m = _LEADING_SYMBOL.match(label)
    if not m:
        return None
    letters = m.group(1)
    # 'HE1', 'HB2': hydrogens named after their carbon (protein style), not helium or boron
    if len(letters) == 2 and letters[0] in "Hh" and letters[1].isupper():
        return "H"
    if len(letters) == 2 and letters.upper() in _BY_UPPER:
        return _BY_UPPER[letters.upper()]
    return _BY_UPPER.get(letters[0].upper())


def atomic_number(symbol: str) -> int:
    return ATOMIC_NUMBER[symbol]


def hill_formula(counts: dict[str, float]) -> str:
    """Hill order: C, H, then alphabetical; without C, all alphabetical."""
    keys = sorted(k for k, v in counts.items() if v > 0)
    if "C" in keys:
        keys = ["C"] + (["H"] if "H" in keys else []) + [k for k in keys if k not in ("C", "H")]
    parts = []
    for k in keys:
        n = counts[k]
        parts.append(k if abs(n - 1) < 1e-9 else f"{k}{_format_count(n)}")
    return " ".join(parts)


def _format_count(n: float) -> str:
    return str(int(round(n))) if abs(n - round(n)) < 1e-6 else f"{n:g}"


def parse_formula(text: str) -> dict[str, float]:
    """'C12 H22 O11' or 'C12H22O11' -> {'C': 12, 'H': 22, 'O': 11}. Raises ValueError."""
    counts: dict[str, float] = {}
    s = text.replace(" ", "")
    pos = 0
    for m in re.finditer(r"([A-Z][a-z]?)(\d*\.?\d*)", s):
        if m.start() != pos:
            raise ValueError(f"cannot read formula {text!r} at {s[pos:]!r}")
        sym = normalise(m.group(1))
        if sym is None:
            raise ValueError(f"unknown element {m.group(1)!r} in formula {text!r}")
        counts[sym] = counts.get(sym, 0.0) + (float(m.group(2)) if m.group(2) else 1.0)
        pos = m.end()
    if pos != len(s) or not counts:
        raise ValueError(f"cannot read formula {text!r}")
    return counts
