"""Element assignment on the synthetic test split: element network vs the baseline typer, same graphs.

    python bench/elements.py --data /data/gen1000 /data/gen4000 [--limit 300] [--json out.json]

Every test-split graph (split recomputed from the compound, as in training) is typed four ways:
network and baseline, each with and without cell contents. Scores count the peaks labelled as
atoms: an atom is right when its peak gets its element; a structure is entirely right when all
of its atoms are. The baseline normally types refined atoms from their refined electron counts;
graphs carry no reflections, so it gets the peak heights as its electron estimates (its own
calibration scales them to the expected electrons). Also reported: network inference time per
structure (median over the graphs, ONNX Runtime on CPU) and its 'not an atom' recall.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.model import Atom
from aisolve.core.stages import NOT_AN_ATOM, TypingContext
from aisolve.core.typing_baseline import BaselineTyper, asu_weights
from aisolve.models.element_data import split_graphs
from aisolve.models.element_typer import ElementPredictor


def test_graphs(dirs: list[str], limit: int | None):
    return list(islice(split_graphs(dirs, "test"), limit))


def _symmetry(g):
    from cctbx import crystal, sgtbx
    return crystal.symmetry(unit_cell=g.cell, space_group=sgtbx.space_group(g.hall))


def network_classes(pred: ElementPredictor, g, contents) -> tuple[list[int], float]:
    sym = _symmetry(g)
    order_z = sym.space_group().order_z()
    weights = asu_weights(sym, g.xyz)
    t = time.perf_counter()
    p = pred.predict(g.xyz, g.height, g.cell, g.hall, contents, weights, order_z)
    return p.classes, time.perf_counter() - t


def baseline_classes(g, contents) -> list[int]:
    sym = _symmetry(g)
    atoms = [Atom(label=f"Q{i}", element="C", xyz=tuple(float(v) for v in s)) for i, s in enumerate(g.xyz)]
    ctx = TypingContext(symmetry=sym, contents=contents, data=None,
                        electron_estimates=[max(float(h), 0.05) for h in g.height])
    typed = BaselineTyper().assign(atoms, ctx)
    return [0 if a.element == NOT_AN_ATOM else ATOMIC_NUMBER[a.element] for a in typed]


def score(rows: list[tuple[np.ndarray, list[int]]]) -> dict:
    right = total = whole = non_atoms = non_atoms_found = 0
    for label, classes in rows:
        classes = np.asarray(classes)
        atoms = label > 0
        ok = classes[atoms] == label[atoms]
        right += int(ok.sum())
        total += int(atoms.sum())
        whole += bool(ok.all())
        non_atoms += int((~atoms).sum())
        non_atoms_found += int((classes[~atoms] == 0).sum())
    return {"atom_accuracy": right / max(total, 1), "structures_all_right": whole / max(len(rows), 1),
            "n_structures": len(rows), "n_atoms": total,
            "non_atom_recall": non_atoms_found / max(non_atoms, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--json")
    ap.add_argument("--weights", help="weights folder (default: the shipped models/weights)")
    a = ap.parse_args(argv)
    graphs = test_graphs(a.data, a.limit)
    pred = ElementPredictor(Path(a.weights)) if a.weights else ElementPredictor()
    results, times = {}, []
    for name in ("network", "baseline"):
        for with_contents in (True, False):
            rows = []
            for g in graphs:
                contents = g.contents if with_contents else {}
                if name == "network":
                    classes, dt = network_classes(pred, g, contents)
                    times.append(dt)
                else:
                    classes = baseline_classes(g, contents)
                rows.append((np.asarray(g.label), classes))
            key = f"{name}, {'with' if with_contents else 'without'} contents"
            results[key] = score(rows)
            print(key, json.dumps({k: round(v, 4) for k, v in results[key].items()}), flush=True)
    n_peaks = [len(g.label) for g in graphs]
    results["network_inference"] = {"median_seconds_per_structure": statistics.median(times),
                                    "median_peaks": statistics.median(n_peaks),
                                    "backend": pred.backend.name, "providers": pred.backend.providers}
    print(json.dumps(results["network_inference"]))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
