"""The state behind the Olex2 stand-ins: the loaded model, files, settings and everything done to it.

Follows ../shared/docs/olex2-integration.md: macros through olex.m (undoable ones are `name`,
`kill`, `HAdd`, `Afix`), direct edits through olx.xf.au.NewAtom + olx.xf.EndUpdate (not undoable), a
history point through `spy.create_history`. Every macro and direct edit is appended to `log`.
"""
from __future__ import annotations

import copy
import re

import aisolve.core  # noqa: F401  (cctbx first; the stand-ins use aisolve's own SHELX reader and writer)
from aisolve.core.model import Atom
from aisolve.core.shelx_ins import read_ins
from aisolve.core.shelx_write import write_ins_text

H_PER_M = {1: 1, 2: 2, 3: 3, 4: 1, 8: 1, 9: 2, 13: 3, 14: 1, 15: 1, 16: 1}
UNDOABLE = ("name", "kill", "afix", "hadd")


class State:
    def __init__(self):
        self.functions: dict = {}  # spy.* functions registered by plugins at import
        self.reset()

    def reset(self, ins_path=None, hkl_path=None):
        self.ins_path, self.hkl_path = ins_path, hkl_path
        self.structure = read_ins(ins_path) if ins_path else None
        self.log: list[str] = []
        self.messages: list[tuple[str, str]] = []
        self.undo_stack: list = []
        self.history: list = []
        self.params: dict = {}
        self.refreshes = 0

    # -- helpers ---------------------------------------------------------------------------------
    def _find(self, label):
        for kind in ("atoms", "peaks"):
            for a in getattr(self.structure, kind):
                if a.label.upper() == label.upper():
                    return kind, a
        return None, None

    def _snapshot(self):
        return copy.deepcopy((self.structure.atoms, self.structure.peaks))

    def _restore(self, snap):
        self.structure.atoms, self.structure.peaks = copy.deepcopy(snap)

    # -- macros ----------------------------------------------------------------------------------
    def macro(self, text: str):
        self.log.append(text)
        words = text.split()
        cmd = words[0].lower()
        if cmd in UNDOABLE:
            self.undo_stack.append(self._snapshot())
        if cmd == "spy.create_history":
            self.history.append(self._snapshot())
        elif cmd == "undo":
            if self.undo_stack:
                self._restore(self.undo_stack.pop())
        elif cmd == "name":
            kind, a = self._find(words[1])
            if a is None:
                raise RuntimeError(f"name: no atom {words[1]}")
            if kind == "peaks":  # a Q-peak becomes an atom
                self.structure.peaks.remove(a)
                a = Atom(label=words[2], element="C", xyz=a.xyz, uiso=0.03)
                self.structure.atoms.append(a)
            a.label, a.element = words[2], _element_of(words[2])
        elif cmd == "kill":
            for label in words[1:]:
                if label == "$Q":
                    self.structure.peaks = []
                    continue
                kind, a = self._find(label)
                if a is not None:
                    getattr(self.structure, kind).remove(a)
        elif cmd in ("afix", "hadd"):
            # `HAdd code atoms` (Olex2 reads a leading number as the AFIX code) and `Afix mn atoms`
            # put that group's H on each atom; HAdd without a code lets Olex2 choose: not modelled
            if len(words) < 3 or not words[1].isdigit():
                raise RuntimeError(f"stand-in models {words[0]} with an explicit AFIX code only: {text!r}")
            code = int(words[1])
            for pivot in words[2:]:
                self._add_riding(code, pivot, words[0])
        elif cmd == "refine":
            pass  # recorded only: no refinement program here
        else:
            raise RuntimeError(f"stand-in does not know the macro {text!r}")

    def _add_riding(self, code, pivot, macro):
        kind, p = self._find(pivot)
        if p is None or kind != "atoms":
            raise RuntimeError(f"{macro}: no atom {pivot}")
        n = H_PER_M[code // 10]
        at = self.structure.atoms.index(p) + 1
        number = re.sub(r"^[A-Za-z]+", "", p.label)
        for k in range(n):
            h = Atom(label=f"H{number}{'ABC'[k] if n > 1 else ''}"[:4], element="H",
                     xyz=(p.xyz[0] + 0.01 * (k + 1), p.xyz[1], p.xyz[2]), uiso=None, afix=code,
                     afix_start=k == 0, riding_u=1.5 if code // 10 in (3, 13, 14) else 1.2)
            self.structure.atoms.insert(at + k, h)

    def new_atom(self, label, x, y, z):
        self.log.append(f"NewAtom {label} {x:.5f} {y:.5f} {z:.5f}")
        self.structure.atoms.append(Atom(label=label, element=_element_of(label), xyz=(x, y, z), uiso=0.03))

    def save(self):
        """OV.File(): the model written back to its .ins (SFAC grows for new elements)."""
        self.log.append("File")
        st = self.structure
        with open(self.ins_path, "w") as fh:
            fh.write(write_ins_text(st))

    def refinement_model(self) -> dict:
        st = self.structure
        atoms = [{"label": a.label, "type": a.element, "crd": list(a.xyz), "uiso": a.uiso or 0.03, "occu": 1.0,
                  "part": a.part} for a in st.atoms]
        atoms += [{"label": p.label, "type": "Q", "crd": list(p.xyz), "peak": p.peak_height or 1.0, "uiso": 0.05,
                   "occu": 1.0, "part": 0} for p in st.peaks]
        return {"aunit": {"cell": list(st.cell), "residues": [{"atoms": atoms}]},
                "exptl": {"radiation": st.wavelength}, "hklf": st.hklf}


def _element_of(label: str) -> str:
    from aisolve.core.elements import element_from_label
    return element_from_label(label)


STATE = State()
