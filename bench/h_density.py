"""H counts with simulated data: the network alone, the network weighed with the difference density
(core/h_evidence.py) at several weights, and the geometry rules, on the same refined models.

    python bench/h_density.py --cif-dir ../shared/data/training-cifs --smiles 150 --split val \
        [--weights 0.25 0.5 1 2] [--json out.json]

Structures of one split (by compound, as every other set): the training CIFs with H (major disorder
component) and packed RDKit molecules. Each is measured anew (bench data: d_min 0.7-1.0 A, noise,
random ADPs, H included), its non-H atoms are refined without H (4 cycles), and the H counts are
read from that model and its difference map, as `aisolve solve` does. The val split chooses
core.h_evidence.WEIGHT; the test split reports.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections import Counter

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.server.threads import share_cores_with_children
from simulated import finish, split_structures


def measure(args) -> dict | None:
    """One structure: simulated data, refined heavy atoms, every method's H counts vs the truth."""
    st, meta, seed, weights = args
    from aisolve.core.data_prep import prepare
    from aisolve.core.evaluate import h_counts_by_distance
    from aisolve.core.h_evidence import count_log_evidence
    from aisolve.core.hydrogens import candidate_groups, checked_counts, place_hydrogens
    from aisolve.core.model import Structure
    from aisolve.core.pipeline import difference_density
    from aisolve.core.refine import refine, set_refinement_flags
    from aisolve.models.data.simulate import SimConfig, simulate
    from aisolve.models.element_decode import log_softmax
    from aisolve.models.hydrogen_typer import NetworkHydrogens, decode_with_formula
    rng = np.random.default_rng(seed)
    try:
        exp = simulate(st, rng, SimConfig(d_min=(0.7, 1.0), drop_strongest_fraction=0.0))
        truth_all = h_counts_by_distance(st)
        heavy_idx = [i for i, a in enumerate(st.atoms) if a.element not in ("H", "D")]
        heavy = [st.atoms[i] for i in heavy_idx]
        truth = np.array([min(truth_all[i], 4) for i in heavy_idx])
        xs = Structure(cell=st.cell, space_group=st.space_group, atoms=heavy).to_xray(include_hydrogens=False)
        set_refinement_flags(xs, aniso=any(a.uaniso is not None for a in heavy))
        data = prepare(exp.reflections, st.symmetry, st.cell_contents)
        result = refine(xs, data.fo_sq, 4)
        density = difference_density(xs, data, result.figures.scale)
        t = time.perf_counter()
        net = NetworkHydrogens()
        prior = net.log_probabilities(xs, st.cell_contents)
        candidates = candidate_groups(xs, st.temperature, density, max_h=prior.shape[1] - 1)
        unit, signal = count_log_evidence(candidates, density, prior, weight=1.0)
        seconds = time.perf_counter() - t
        sym, sites = xs.crystal_symmetry(), [sc.site for sc in xs.scatterers()]
        guesses = {"network": decode_with_formula(prior, sym, sites, st.cell_contents)}
        for w in weights:
            lp = log_softmax(prior + w * unit, np.ones(prior.shape[1], dtype=bool))
            guesses[f"network+density w={w:g}"] = decode_with_formula(lp, sym, sites, st.cell_contents)
        guesses = {k: checked_counts(xs, g)[0] for k, g in guesses.items()}
        rules = np.zeros(len(heavy), dtype=int)
        for g in place_hydrogens(xs, st.temperature, density):
            rules[g.pivot] = len(g.sites_frac)
        guesses["geometry"] = list(rules)
    except (AssertionError, RuntimeError, ValueError, ArithmeticError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "origin": meta["origin"]}
    return {"origin": meta["origin"], "source": meta["source"], "d_min": exp.d_min, "r1": result.figures.r1,
            "signal": signal[0], "seconds": seconds, "n": len(heavy),
            "right": {k: int((np.array(g) == truth).sum()) for k, g in guesses.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cif-dir")
    p.add_argument("--smiles", type=int, default=150, help="packed RDKit molecules of the split")
    p.add_argument("--split", default="val")
    p.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args(argv)
    t0 = time.monotonic()
    with_h = lambda st: any(a.element in ("H", "D") for a in st.atoms)  # noqa: E731
    jobs = [(st, meta, seed, a.weights)
            for st, meta, seed in split_structures(a.cif_dir, a.split, a.seed, a.smiles, keep=with_h)]
    share_cores_with_children(a.jobs)
    with mp.get_context("spawn").Pool(a.jobs) as pool:
        rows = [r for r in pool.imap(measure, jobs, chunksize=4) if r is not None]
    good = [r for r in rows if "error" not in r]
    methods = list(good[0]["right"]) if good else []
    report = {"split": a.split, "n_structures": len(good), "n_atoms": sum(r["n"] for r in good),
              "errors": dict(Counter(r["error"].split(":")[0] for r in rows if "error" in r)),
              "sources": dict(Counter(r["source"] for r in good)),
              "median_d_min": round(statistics.median(r["d_min"] for r in good), 2) if good else None,
              "median_h_signal_sigma": round(statistics.median(r["signal"] for r in good), 2) if good else None,
              "median_evidence_ms": round(1000 * statistics.median(r["seconds"] for r in good), 1) if good else None,
              "methods": {}}
    for m in methods:
        right = sum(r["right"][m] for r in good)
        report["methods"][m] = {"atom_accuracy": round(right / max(report["n_atoms"], 1), 4),
                                "structures_all_right": sum(r["right"][m] == r["n"] for r in good)}
    return finish(report, rows, a.json, t0)


if __name__ == "__main__":
    raise SystemExit(main())
