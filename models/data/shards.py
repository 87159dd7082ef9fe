"""Sharded, compressed peak-graph files with a manifest and a statistics report.

A shard is one .npz: the per-peak arrays of all its graphs concatenated (xyz, height, label,
h_count) with `offsets` marking where each graph starts, per-graph `cell`, and a JSON string per
graph with the rest (space group, contents, source, compound, split, simulation settings).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from aisolve.core.elements import SYMBOLS
from aisolve.models.data.labelling import PeakGraph


def write_shard(path: Path, graphs: list[PeakGraph]) -> None:
    offsets = np.cumsum([0] + [len(g.label) for g in graphs]).astype(np.int64)
    np.savez_compressed(
        path,
        xyz=np.concatenate([g.xyz for g in graphs]).astype(np.float32),
        height=np.concatenate([g.height for g in graphs]).astype(np.float32),
        label=np.concatenate([g.label for g in graphs]).astype(np.int8),
        h_count=np.concatenate([g.h_count for g in graphs]).astype(np.int8),
        offsets=offsets,
        cell=np.array([g.cell for g in graphs], dtype=np.float32),
        meta=np.array([json.dumps({"hall": g.hall, "contents": g.contents, **g.meta}, sort_keys=True)
                       for g in graphs]),
    )


def read_shard(path: Path) -> list[PeakGraph]:
    z = np.load(path, allow_pickle=False)
    out = []
    for k, meta_text in enumerate(z["meta"]):
        a, b = z["offsets"][k], z["offsets"][k + 1]
        meta = json.loads(str(meta_text))
        out.append(PeakGraph(cell=tuple(float(x) for x in z["cell"][k]), hall=meta.pop("hall"),
                             contents=meta.pop("contents"), xyz=z["xyz"][a:b], height=z["height"][a:b],
                             label=z["label"][a:b], h_count=z["h_count"][a:b], meta=meta))
    return out


def statistics(graphs: list[PeakGraph], failures: Counter) -> dict:
    elements = Counter()
    space_groups = Counter()
    sizes = []
    n_peaks = n_non_atoms = 0
    splits = Counter()
    sources = Counter()
    d_mins = []
    h_counts = Counter()
    for g in graphs:
        for z in g.label[g.label > 0]:
            elements[SYMBOLS[int(z) - 1]] += 1
        h_counts.update(int(h) for h in g.h_count[g.label > 0])
        n_peaks += len(g.label)
        n_non_atoms += int((g.label == 0).sum())
        space_groups[g.meta.get("space_group", g.hall)] += 1
        sizes.append(g.meta.get("n_true_non_h", 0))
        splits[g.meta.get("split", "?")] += 1
        sources[g.meta.get("source", "?")] += 1
        d_mins.append(g.meta.get("d_min", 0.0))
    sizes_a = np.array(sizes or [0])
    d_a = np.array(d_mins or [0.0])
    return {
        "n_graphs": len(graphs),
        "n_peaks": n_peaks,
        "not_an_atom_fraction": round(n_non_atoms / max(n_peaks, 1), 4),
        "elements": dict(elements.most_common()),
        "h_counts": dict(sorted(h_counts.items())),
        "space_groups": dict(space_groups.most_common()),
        "splits": dict(splits),
        "sources": dict(sources),
        "non_h_atoms_per_structure": {"min": int(sizes_a.min()), "median": float(np.median(sizes_a)),
                                      "max": int(sizes_a.max())},
        "d_min": {"min": float(d_a.min()), "median": float(np.median(d_a)), "max": float(d_a.max())},
        "failures": dict(failures),
    }


def statistics_markdown(stats: dict) -> str:
    lines = [f"# Peak-graph data set: {stats['n_graphs']} graphs, {stats['n_peaks']} peaks "
             f"({100 * stats['not_an_atom_fraction']:.1f} % not atoms)", ""]
    for key in ("splits", "sources", "elements", "h_counts", "space_groups", "failures"):
        lines.append(f"- {key}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items()))
    s = stats["non_h_atoms_per_structure"]
    lines.append(f"- non-H atoms per structure: min {s['min']}, median {s['median']:g}, max {s['max']}")
    d = stats["d_min"]
    lines.append(f"- d_min: min {d['min']:.2f}, median {d['median']:.2f}, max {d['max']:.2f} A")
    return "\n".join(lines) + "\n"
