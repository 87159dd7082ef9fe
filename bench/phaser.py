"""Neural phaser vs charge flipping on simulated P2_1/c data, by resolution (issue 7).

    python bench/phaser.py [--resolutions 1.0 1.2 1.5 1.8 2.0] [--trials 32] [--max-cases 40]

Cases, all built from the training CIFs (the phaser trains on NCI molecules only, never on them):
  * "real packing": every ordered P2_1/c training CIF (any setting) with cell edges <= 10 A, as
    published;
  * "repacked": the asymmetric units (3-14 non-H atoms, with their H where the CIF has them) of the
    test-split CIFs, placed at a random orientation in a random P2_1/c cell with edges <= 10 A (the
    sampler's cells).
For each case and d_min, the amplitudes of every reflection inside the network's sphere (|h| <= 10
in the standard setting) to d_min, no noise. Success is PhAI's measure: the map correlation with
the true phases >= 0.95 at the best of the eight origins. Both methods get the same amplitudes:
the network's first trial, the best of `--trials` by the network's sign confidence (no truth
used; models/neural_phaser.sign_confidence), and
charge flipping (core/phasing.ChargeFlippingPhaser, the pipeline's default, with its own
truth-free choice by skewness).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from cctbx import crystal, xray

from aisolve.core.data_prep import PreparedData
from aisolve.core.phasing import ChargeFlippingPhaser
from aisolve.models.data.generate import split_of
from aisolve.models.data.phaser_samples import PhaserSampler
from aisolve.models.data.real_sources import load_ordered, training_cifs
from aisolve.models.neural_phaser import WEIGHTS_DIR, GridData, NeuralPhaser, origin_correlation, sphere_set

CIFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "training-cifs"
SUCCESS_R = 0.95


def cases(max_cases: int, seed: int = 0) -> list[tuple[str, str, xray.structure]]:
    entries = training_cifs(CIFS)
    out = []
    for e in entries:  # real packing
        st = load_ordered(e)
        if st is None or st.space_group.type().number() != 14 or max(st.cell[:3]) > 10.0:
            continue
        out.append(("real packing", e.path.stem, st.to_xray()))
    frags = []
    for e in entries:  # test-split asymmetric units, repacked
        if split_of(e.compound_id, 0) != "test":
            continue
        st = load_ordered(e)
        if st is None or not (3 <= len(st.non_h_atoms()) <= 14):
            continue
        uc = st.unit_cell
        xyz = np.array([uc.orthogonalize(a.xyz) for a in st.atoms])
        heavy = np.array([a.element != "H" for a in st.atoms])
        frags.append((e.path.stem, [a.element for a in st.atoms], xyz - xyz[heavy].mean(axis=0)))
    sampler = PhaserSampler([(els, xyz) for _, els, xyz in frags], seed=seed)
    for name, els, xyz in frags:
        sampler.fragments = [(els, xyz)]
        cell, frac, elements, u = sampler.random_structure()
        xs = xray.structure(crystal_symmetry=crystal.symmetry(unit_cell=cell, space_group_symbol="P 1 21/c 1"))
        for i, (el, site) in enumerate(zip(elements, frac)):
            xs.add_scatterer(xray.scatterer(label=f"{el}{i}", site=tuple(site), u=u, scattering_type=el))
        out.append(("repacked", name, xs))
    return out[:max_cases]


def run_case(xs: xray.structure, d_min: float, neural: NeuralPhaser, seed: int) -> dict:
    ms = sphere_set(xs.crystal_symmetry(), d_min)
    truth = ms.structure_factors_from_scatterers(xs, algorithm="direct").f_calc()
    f_obs = abs(truth).set_observation_type_xray_amplitude()
    t = time.monotonic()
    grid = GridData(f_obs)
    signs, _logits, confidence, _skew = neural.trials(grid)
    t_net = time.monotonic() - t
    r_first = origin_correlation(grid.phased(signs[0]), truth)
    r_best = origin_correlation(grid.phased(signs[int(np.argmax(confidence))]), truth)
    t = time.monotonic()
    flipped = ChargeFlippingPhaser(seed=seed).phase(PreparedData.from_amplitudes(f_obs), f_obs.crystal_symmetry(), 60.0)
    t_cf = time.monotonic() - t
    r_cf = origin_correlation(flipped.f_calc, truth) if flipped.solved else 0.0
    return {"n_refl": f_obs.size(), "r_net_first": r_first, "r_net_best": r_best, "r_cf": r_cf,
            "t_net": t_net, "t_cf": t_cf}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolutions", type=float, nargs="+", default=[1.0, 1.2, 1.5, 1.8, 2.0])
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--cycles", type=int, default=12)
    ap.add_argument("--max-cases", type=int, default=40)
    ap.add_argument("--json", default=None)
    ap.add_argument("--weights", default=None, help="folder with phase_net.pt (default: the shipped one)")
    args = ap.parse_args()
    neural = NeuralPhaser(n_trials=args.trials, cycles=args.cycles, device="cpu",
                          weights_dir=Path(args.weights) if args.weights else WEIGHTS_DIR)
    all_cases = cases(args.max_cases)
    print(f"{len(all_cases)} cases: " + ", ".join(f"{sum(1 for c in all_cases if c[0] == k)} {k}"
                                                  for k in ("real packing", "repacked")))
    rows = []
    for d_min in args.resolutions:
        for i, (kind, name, xs) in enumerate(all_cases):
            res = run_case(xs, d_min, neural, seed=i)
            rows.append({"d_min": d_min, "kind": kind, "case": name, **res})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print()
    print("| d_min (A) | cases | network, 1st trial | network, best of %d (confidence) | charge flipping | "
          "median time network / CF (s) |" % args.trials)
    print("|---|---|---|---|---|---|")
    for d_min in args.resolutions:
        sub = [r for r in rows if r["d_min"] == d_min]

        def rate(key):
            return f"{sum(r[key] >= SUCCESS_R for r in sub)}/{len(sub)}"
        print(f"| {d_min:.1f} | {len(sub)} | {rate('r_net_first')} | {rate('r_net_best')} | {rate('r_cf')} | "
              f"{statistics.median(r['t_net'] for r in sub):.2f} / {statistics.median(r['t_cf'] for r in sub):.2f} |")


if __name__ == "__main__":
    main()
