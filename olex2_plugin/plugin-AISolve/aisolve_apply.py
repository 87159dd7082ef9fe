"""What the plugin does to the Olex2 model, as plain data: no Olex2 calls here (Python 3.8).

The server's answers (element assignments keyed by the current labels, or a .res model) become a
list of edits; AISolve.py turns them into Olex2 macros, so that tests can check the plan and the
stand-in modules can check its execution.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

# H atoms per AFIX group code m (the tens/hundreds part of AFIX mn)
H_PER_AFIX_M = {1: 1, 2: 2, 3: 3, 4: 1, 8: 1, 9: 2, 13: 3, 14: 1, 15: 1, 16: 1}


def afix_m(code: int) -> int:
    return code // 10


def parse_res(text: str) -> Tuple[List[str], List[Dict]]:
    """(SFAC types, atoms) of a SHELX .res: each atom {label, element, xyz, afix, uiso}; Q-peaks excluded."""
    sfac: List[str] = []
    atoms: List[Dict] = []
    afix = 0
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].split("!")[0].rstrip()
        while line.endswith("=") and i + 1 < len(lines):  # continuation
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        words = line.split()
        if not words:
            continue
        key = words[0].upper()
        if key in ("HKLF", "END"):
            break
        if key == "SFAC":
            sfac.extend(w.capitalize() for w in words[1:] if w.isalpha())
            continue
        if key == "AFIX":
            afix = int(float(words[1])) if len(words) > 1 else 0
            continue
        if len(words) >= 5 and _is_number(words[1]) and all(_is_number(w) for w in words[2:5]) \
                and not key.startswith("Q") and key not in _INSTRUCTIONS:
            k = int(float(words[1]))
            atoms.append({"label": words[0], "element": sfac[k - 1] if 0 < k <= len(sfac) else "C",
                          "xyz": [float(w) for w in words[2:5]], "afix": afix,
                          "uiso": float(words[6]) if len(words) > 6 and _is_number(words[6]) else None})
    return sfac, atoms


_INSTRUCTIONS = {"CELL", "ZERR", "LATT", "SYMM", "UNIT", "FVAR", "WGHT", "L.S.", "PLAN", "TEMP", "SIZE", "CONF",
                 "BOND", "LIST", "FMAP", "ACTA", "SHEL", "EXTI", "REM", "TITL", "DISP", "PART", "RESI", "DFIX",
                 "DANG", "SADI", "SIMU", "DELU", "RIGU", "ISOR", "EADP", "EXYZ", "SUMP", "OMIT", "HTAB", "MPLA",
                 "MORE", "BUMP", "SWAT", "TWIN", "BASF", "CONN", "FREE", "HFIX", "SPEC", "FLAT", "CHIV", "EQIV"}


def _is_number(w: str) -> bool:
    try:
        float(w)
        return True
    except ValueError:
        return False


def hydrogen_groups(atoms: List[Dict]) -> List[Tuple[str, int, int]]:
    """(pivot label, AFIX code, number of H) for each riding group of a parsed .res."""
    groups: List[Tuple[str, int, int]] = []
    pivot: Optional[str] = None
    for a in atoms:
        if a["element"] in ("H", "D"):
            if a["afix"] and pivot is not None:
                if groups and groups[-1][0] == pivot and groups[-1][1] == a["afix"]:
                    groups[-1] = (pivot, a["afix"], groups[-1][2] + 1)
                else:
                    groups.append((pivot, a["afix"], 1))
        else:
            pivot = a["label"]
    return groups


# AFIX 3: H riding as placed (water, groups without an idealising code): HAdd cannot make them
AS_PLACED = 3


def hadd_commands(groups: List[Tuple[str, int, int]]) -> List[Tuple[int, List[str]]]:
    """(AFIX code, pivots) per code, in first-seen order: one `HAdd code pivots` macro each
    (groups riding as placed are left out: see placed_hydrogens)."""
    by_code: Dict[int, List[str]] = {}
    for pivot, afix, _n in groups:
        if afix != AS_PLACED:
            by_code.setdefault(afix, []).append(pivot)
    return list(by_code.items())


def placed_hydrogens(atoms: List[Dict]) -> List[Tuple[str, List[float]]]:
    """(label, xyz) of the H the server placed itself (AFIX 3: water H at their hydrogen bonds, OH on metals)."""
    return [(a["label"], a["xyz"]) for a in atoms if a["element"] in ("H", "D") and a["afix"] == AS_PLACED]


def rename_plan(current: List[Dict], assignments: List[Dict]
                ) -> Tuple[List[Tuple[str, str]], List[str], List[Tuple[str, List[float]]]]:
    """(renames OLD->NEW, labels to delete, atoms to add (label, xyz)) turning the current sites
    into the assigned elements; rows without a label are atoms the model lacked.

    Labels follow SHELX habits: element + number, numbers unique per element, at most 4 characters;
    sites whose element is already right keep their label.
    """
    by_label = {a["label"]: a for a in current}
    taken = {a["label"].upper() for a in current}
    counters: Dict[str, int] = {}
    renames: List[Tuple[str, str]] = []
    kills: List[str] = []
    additions: List[Tuple[str, List[float]]] = []

    def new_label(element: str) -> str:
        n = counters.get(element, 0)
        while True:
            n += 1
            new = f"{element}{n}"
            if new.upper() not in taken and len(new) <= 4:
                break
        counters[element] = n
        taken.add(new.upper())
        return new

    for row in assignments:
        label, element = row["label"], row.get("element")
        if label is None:
            if element:
                additions.append((new_label(element), list(row["xyz"])))
            continue
        site = by_label.get(label)
        if site is None:
            continue
        if element is None:
            kills.append(label)
            continue
        if site["type"].capitalize() == element and not site.get("is_peak"):
            continue
        renames.append((label, new_label(element)))
    return renames, kills, additions


def low_confidence(report_atoms: List[Dict], threshold: float = 0.8) -> List[str]:
    """Lines for atoms the network is unsure about: label, element, confidence, second best."""
    out = []
    for a in report_atoms:
        conf = a.get("confidence")
        if conf is not None and (conf < threshold or a.get("ambiguous")):
            second = a.get("second_best")
            out.append(f"{a['label']}: {a['element']} ({conf:.2f})" + (f", else {second}" if second else ""))
    return out
