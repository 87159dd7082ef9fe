"""Generate N labelled peak graphs: sources mixed by weight, simulated data, labels, shards.

Sample i is made from its own random stream (seed, i) and tried again with sub-streams when a
crystal cannot be packed or its map cannot be phased, so the output depends only on the seed and N,
not on the number of worker processes. Splits follow the compound (formula for real structures,
Murcko scaffold for SMILES molecules), never the file or the sample.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.models.data.labelling import PeakGraph, label_graph
from aisolve.models.data.simulate import SimConfig, simulate

SPLITS = (("train", 0.9), ("val", 0.05), ("test", 0.05))
MAX_ATTEMPTS = 12
# Peak graphs come from maps charge flipping can phase, as at inference: beyond about 1.4 A it
# rarely does, and such samples would only be discarded.
GRAPH_D_MIN = (0.7, 1.4)


@dataclass
class GenConfig:
    n: int
    seed: int = 0
    # Splits hash the compound with their own seed, not the sampling seed, so that data sets made
    # with different sampling seeds can be pooled without a compound crossing splits.
    split_seed: int = 0
    cif_dir: str | None = None  # ../shared/data/training-cifs; None leaves the real source out
    weights: dict = field(default_factory=lambda: {"cif": 0.5, "smiles": 0.5})
    variant_probability: float = 0.25
    z_prime_2_probability: float = 0.1
    solvent_probability: float = 0.1
    shard_size: int = 500
    # Cells much larger than small-molecule ones (big cubic frameworks) cost 10-100x the phasing
    # time of a typical graph: V/d_min^3 above this (~5,000 A^3 at 0.75 A) is drawn again.
    max_cell_per_dmin3: float = 12000.0
    sim: SimConfig = field(default_factory=lambda: SimConfig(d_min=GRAPH_D_MIN))


def split_of(compound_id: str, seed: int) -> str:
    """Deterministic split of a compound: the same compound always lands in the same split."""
    h = int(hashlib.sha256(f"{seed}:{compound_id}".encode()).hexdigest()[:12], 16) / 16 ** 12
    acc = 0.0
    for name, frac in SPLITS:
        acc += frac
        if h < acc:
            return name
    return SPLITS[-1][0]


class _Sources:
    """Per-process caches of the CIF list and the SMILES list."""

    def __init__(self, cfg: GenConfig):
        from aisolve.models.data.molecules import nci_smiles
        from aisolve.models.data.real_sources import training_cifs
        self.cfg = cfg
        self.cifs = training_cifs(cfg.cif_dir) if cfg.cif_dir else []
        self.smiles = nci_smiles()
        weights = dict(cfg.weights)
        if not self.cifs:
            weights.pop("cif", None)
        self.kinds = list(weights)
        p = np.array([weights[k] for k in self.kinds], dtype=float)
        self.p = p / p.sum()

    def crystal(self, rng: np.random.Generator):
        kind = str(rng.choice(self.kinds, p=self.p))
        if kind == "cif":
            from aisolve.models.data.real_sources import load_ordered
            entry = self.cifs[int(rng.integers(len(self.cifs)))]
            st = load_ordered(entry)
            return (st, entry.compound_id, "cif", entry.path.name) if st else None
        return self._packed(rng)

    def _packed(self, rng: np.random.Generator):
        from aisolve.models.data.molecules import embed
        from aisolve.models.data.packing import SPACE_GROUPS, pack
        smiles = self.smiles[int(rng.integers(len(self.smiles)))]
        mol = embed(smiles, seed=int(rng.integers(1 << 30)))
        if mol is None:
            return None
        molecules = [(mol.elements, mol.xyz)]
        extra = []
        if rng.random() < self.cfg.z_prime_2_probability:
            molecules.append((mol.elements, mol.xyz))
            extra.append("Z'=2")
        if rng.random() < self.cfg.solvent_probability:
            water = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
            molecules.append((["O", "H", "H"], water))
            extra.append("water")
        groups = list(SPACE_GROUPS)
        p = np.array([SPACE_GROUPS[g] for g in groups])
        sg = str(rng.choice(groups, p=p / p.sum()))
        st = pack(molecules, sg, rng, title=mol.smiles[:60])
        return (st, "smi:" + mol.scaffold, "smiles", mol.smiles + (" " + "+".join(extra) if extra else "")) \
            if st else None


_SOURCES: _Sources | None = None


def _init(cfg: GenConfig) -> None:
    global _SOURCES
    _SOURCES = _Sources(cfg)


def make_sample(cfg: GenConfig, i: int) -> tuple[PeakGraph | None, Counter]:
    """Graph number i of the data set (deterministic in cfg.seed and i)."""
    failures: Counter = Counter()
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([cfg.seed, i, attempt])
        try:
            graph = _attempt(cfg, i, rng, failures)
        except (AssertionError, RuntimeError, ValueError, ArithmeticError) as exc:
            # a source structure cctbx cannot use (e.g. a cell rounded off its symmetry): next one
            failures[f"error:{type(exc).__name__}"] += 1
            continue
        if graph is not None:
            return graph, failures
    failures["gave_up"] += 1
    return None, failures


def _attempt(cfg: GenConfig, i: int, rng: np.random.Generator, failures: Counter) -> PeakGraph | None:
    from aisolve.models.data.variants import substitute
    timings = {}
    t = time.monotonic()
    made = _SOURCES.crystal(rng)
    timings["crystal"] = time.monotonic() - t
    if made is None:
        failures["no_crystal"] += 1
        return None
    st, compound, source, origin = made
    variant = ""
    if rng.random() < cfg.variant_probability:
        sub = substitute(st, rng)
        if sub is not None:
            st, variant = sub
    t = time.monotonic()
    experiment = simulate(st, rng, cfg.sim)
    timings["simulate"] = time.monotonic() - t
    if st.unit_cell.volume() / experiment.d_min ** 3 > cfg.max_cell_per_dmin3:
        failures["cell_too_large"] += 1
        return None
    t = time.monotonic()
    graph = label_graph(st, experiment.reflections, seed=int(rng.integers(1 << 30)))
    timings["label"] = time.monotonic() - t
    if graph is None:
        failures["not_phased"] += 1
        return None
    graph.meta.update({
        "index": i, "source": source, "origin": origin, "compound": compound, "variant": variant,
        "split": split_of(compound, cfg.split_seed), "space_group": st.space_group_symbol,
        "wavelength": experiment.wavelength, "u_iso": round(experiment.u_iso, 4),
        "aniso": experiment.aniso, "seconds": {k: round(v, 3) for k, v in timings.items()}})
    return graph


def _worker(args):
    cfg, i = args
    return make_sample(cfg, i)


def generate(cfg: GenConfig, out_dir: str | Path, jobs: int = 1, progress=None) -> dict:
    """Write shards, manifest.json, stats.json and stats.md into out_dir; returns the manifest."""
    from aisolve.models.data.shards import statistics, statistics_markdown, write_shard
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    graphs: list[PeakGraph] = []
    failures: Counter = Counter()
    shards = []
    tasks = ((cfg, i) for i in range(cfg.n))
    if jobs > 1:
        pool = mp.get_context("fork").Pool(jobs, initializer=_init, initargs=(cfg,))
        results = pool.imap(_worker, tasks, chunksize=4)
    else:
        _init(cfg)
        pool, results = None, map(_worker, tasks)
    pending: list[PeakGraph] = []
    try:
        for k, (graph, fails) in enumerate(results, start=1):
            failures.update(fails)
            if graph is not None:
                graphs.append(graph)
                pending.append(graph)
            if len(pending) >= cfg.shard_size or (k == cfg.n and pending):
                name = f"shard_{len(shards):04d}.npz"
                write_shard(out / name, pending)
                shards.append({"file": name, "n_graphs": len(pending),
                               "splits": dict(Counter(g.meta["split"] for g in pending))})
                pending = []
            if progress:
                progress(k / cfg.n, f"{k}/{cfg.n} samples, {len(graphs)} graphs")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    stats = statistics(graphs, failures)
    elapsed = time.monotonic() - t0
    stats["seconds"] = round(elapsed, 1)
    stats["graphs_per_second"] = round(len(graphs) / max(elapsed, 1e-9), 2)
    config = asdict(cfg)
    manifest = {"format": "aisolve-peak-graphs/1", "config": config, "shards": shards,
                "n_graphs": len(graphs), "jobs": jobs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "stats.md").write_text(statistics_markdown(stats))
    return manifest
