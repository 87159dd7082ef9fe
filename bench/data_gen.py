"""Training-data throughput: labelled peak graphs per second (2 workers) and phaser samples per second.

    python bench/data_gen.py [--graphs 60] [--samples 2000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import aisolve.core  # noqa: F401
from aisolve.models.data.generate import GenConfig, generate
from aisolve.models.data.molecules import embed, nci_smiles
from aisolve.models.data.phaser_samples import PhaserSampler

CIFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "training-cifs"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", type=int, default=60)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        generate(GenConfig(n=args.graphs, seed=11, cif_dir=str(CIFS) if CIFS.is_dir() else None), d, jobs=2)
        stats = json.loads((Path(d) / "stats.json").read_text())
    frags = [(m.elements, m.xyz) for m in (embed(s, 1, max_heavy=14) for s in nci_smiles()[:200]) if m]
    sampler = PhaserSampler(frags, seed=0)
    t = time.monotonic()
    for _ in range(args.samples):
        sampler.sample()
    rate = args.samples / (time.monotonic() - t)
    print(f"peak graphs: {stats['n_graphs']} in {stats['seconds']} s = {stats['graphs_per_second']} graphs/s "
          f"(2 workers; failed attempts {stats['failures']})")
    print(f"phaser samples: {rate:.0f} samples/s (1 core)")


if __name__ == "__main__":
    main()
