"""Hydrogen counts on the synthetic test split: the hydrogen network vs the geometry rules, same atoms.

    python bench/hydrogens.py --data data/h_examples.pkl [--weights models/weights] [--json out.json]

Test-split structures (by compound) of the examples file: real training-CIF structures reduced to
their major disorder component and packed RDKit molecules, non-H atoms jittered by 0.01 A. Per atom
and per structure (all atoms right): the network with argmax, the network with the formula's H total
(the decoding `aisolve solve` uses with cell contents), and the geometry rules (core/hydrogens.py).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.core.elements import SYMBOLS
from aisolve.models.h_data import load_saved
from aisolve.models.hydrogen_typer import WEIGHTS_DIR, HydrogenPredictor, decode_counts, decode_with_formula


def main(argv=None) -> int:
    from cctbx import crystal, sgtbx
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--weights", default=str(WEIGHTS_DIR))
    p.add_argument("--split", default="test")
    p.add_argument("--json")
    a = p.parse_args(argv)
    examples = [ex for ex in load_saved(a.data) if ex.meta.get("split") == a.split]
    pred = HydrogenPredictor(Path(a.weights))
    scores = {k: {"right": 0, "atoms": 0, "all_right": 0} for k in ("network", "network+total", "geometry")}
    by_source: dict = {}
    times = []
    for ex in examples:
        m = ex.meta
        elements = [SYMBOLS[int(z) - 1] for z in m["tokens"]]
        t = time.perf_counter()
        log_probs = pred.log_probabilities(m["xyz"], elements, list(ex.height[:ex.n_asu]), m["cell"], m["hall"],
                                           ex.contents)
        times.append(time.perf_counter() - t)
        sym = crystal.symmetry(unit_cell=m["cell"], space_group=sgtbx.space_group(m["hall"]))
        guesses = {"network": np.array(decode_counts(log_probs, [], None)),
                   "network+total": np.array(decode_with_formula(log_probs, sym, [tuple(x) for x in m["xyz"]],
                                                                 ex.contents)),
                   "geometry": np.asarray(m["geometry_counts"])}
        for k, g in guesses.items():
            ok = g == ex.label
            for bucket in (scores[k], by_source.setdefault(m["source"], {}).setdefault(
                    k, {"right": 0, "atoms": 0, "all_right": 0, "structures": 0})):
                bucket["structures"] = bucket.get("structures", 0) + 1
                bucket["right"] += int(ok.sum())
                bucket["atoms"] += len(ok)
                bucket["all_right"] += bool(ok.all())
    n = len(examples)
    report = {"n_structures": n, "split": a.split, "median_ms": round(1000 * statistics.median(times), 1),
              "methods": {k: {"atom_accuracy": v["right"] / max(v["atoms"], 1), "structures_all_right": v["all_right"],
                              "atoms": v["atoms"]} for k, v in scores.items()},
              "by_source": by_source}
    print(f"{n} {a.split} structures; network inference median {report['median_ms']} ms")
    print("| method | atoms right | structures all right |")
    print("|---|---|---|")
    for k, v in scores.items():
        print(f"| {k} | {v['right']}/{v['atoms']} ({100 * v['right'] / max(v['atoms'], 1):.1f} %) | "
              f"{v['all_right']}/{n} ({100 * v['all_right'] / max(n, 1):.1f} %) |")
    for source, methods in by_source.items():
        print(f"{source}: " + ", ".join(f"{k} {v['right']}/{v['atoms']} atoms, {v['all_right']}/{v['structures']} "
                                         f"structures all right" for k, v in methods.items()))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
