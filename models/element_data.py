"""Peak graphs from the generator's shards as tensors for the element network.

Each graph becomes the network's input exactly as at inference (`graph_inputs.build_input`:
asymmetric-unit peaks plus symmetry context nodes), with the radius-graph edges precomputed by a
KD-tree so that training does not pay for the dense distance matrix.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from aisolve.models.data.labelling import PeakGraph
from aisolve.models.data.shards import read_shard
from aisolve.models.element_net import MAX_Z, NOT_ATOM_TOKEN, UNKNOWN_TOKEN
from aisolve.models.graph_inputs import CONTEXT_RADIUS, build_input


@dataclass
class Example:
    pos: np.ndarray  # (n, 3) float32
    height: np.ndarray  # (n,) float32
    source: np.ndarray  # (n,) int64: asymmetric-unit peak each node copies
    n_asu: int
    label: np.ndarray  # (n_asu,) int64 class (0 = not an atom)
    edges: np.ndarray  # (2, E) int64
    contents: dict
    meta: dict


def radius_edge_array(pos: np.ndarray, cutoff: float) -> np.ndarray:
    """(2, E) directed pairs of nodes closer than `cutoff` (a KD-tree: what training precomputes)."""
    from scipy.spatial import cKDTree
    pairs = cKDTree(pos).query_pairs(r=cutoff, output_type="ndarray")
    if not len(pairs):
        return np.zeros((2, 0), dtype=np.int64)
    return np.ascontiguousarray(np.concatenate([pairs, pairs[:, ::-1]]).T, dtype=np.int64)


def to_example(graph, cutoff: float) -> Example:
    gi = build_input(np.asarray(graph.xyz, dtype=float), np.asarray(graph.height, dtype=float),
                     graph.cell, graph.hall)
    edges = radius_edge_array(gi.pos, cutoff)
    label = np.asarray(graph.label, dtype=np.int64)
    label[label > MAX_Z] = 0  # nothing beyond Pu occurs; keep the class range fixed
    return Example(gi.pos, gi.height, gi.source.astype(np.int64), gi.n_asu, label, edges,
                   dict(graph.contents), dict(graph.meta))


def thin_non_atoms(ex: Example, drop: float, rng: np.random.Generator) -> Example:
    """`ex` without a random share `drop` of its 'not an atom' peaks (and their context copies),
    heights renormalised to the remaining peaks' median as build_input does. Training graphs lose
    atoms to noisy maps and hold about 46 % noise peaks; a graph the pipeline builds around a
    refined model holds all atoms and fewer: thinning teaches the network both."""
    gone = (ex.label == 0) & (rng.random(ex.n_asu) < drop)
    if not gone.any() or gone.all():
        return ex
    from scipy.spatial import cKDTree
    keep_node = ~gone[ex.source]
    # a context copy stays only while it is still near a remaining asymmetric-unit peak
    near, _ = cKDTree(ex.pos[:ex.n_asu][~gone]).query(ex.pos, k=1)
    keep_node[ex.n_asu:] &= near[ex.n_asu:] < CONTEXT_RADIUS
    new_index = np.cumsum(keep_node) - 1
    keep_edge = keep_node[ex.edges[0]] & keep_node[ex.edges[1]]
    asu_map = np.cumsum(~gone) - 1
    height = ex.height[keep_node]
    scale = float(np.median(ex.height[:ex.n_asu][~gone]))
    return Example(ex.pos[keep_node], height / max(scale, 1e-6), asu_map[ex.source[keep_node]], int((~gone).sum()),
                   ex.label[~gone], new_index[ex.edges[:, keep_edge]], ex.contents, ex.meta)


def split_graphs(dirs: list[str | Path], split: str, split_seed: int = 0) -> Iterator[PeakGraph]:
    """Every graph of `split` in the data sets under `dirs` (generator output directories).

    The split is recomputed from the compound with one split seed, so data sets generated with
    different sampling seeds (which older generator versions also used for splitting) pool safely.
    """
    from aisolve.models.data.generate import split_of
    for d in dirs:
        d = Path(d)
        # the manifest lists the shards; a run stopped early has complete shards and no manifest
        manifest = d / "manifest.json"
        files = [d / s["file"] for s in json.loads(manifest.read_text())["shards"]] if manifest.exists() \
            else sorted(d.glob("shard_*.npz"))
        for f in files:
            for g in read_shard(f):
                if split_of(g.meta["compound"], split_seed) == split:
                    yield g


def load_examples(dirs: list[str | Path], split: str, cutoff: float, limit: int | None = None,
                  split_seed: int = 0) -> list[Example]:
    """The graphs of `split` (see split_graphs) as network inputs, at most `limit` of them."""
    return [to_example(g, cutoff) for g in islice(split_graphs(dirs, split, split_seed), limit)]


def tokens_for_pass_two(label: np.ndarray, rng: np.random.Generator, contents_z: list[int],
                        noise: float) -> np.ndarray:
    """Second-pass tokens as the first pass would give them: the truth with a share of mistakes
    (another element of the contents, 'not an atom', or unknown)."""
    tok = np.where(label > 0, label, NOT_ATOM_TOKEN)
    wrong = rng.random(len(label)) < noise
    choices = list(contents_z) + [NOT_ATOM_TOKEN, UNKNOWN_TOKEN]
    tok[wrong] = rng.choice(choices, size=int(wrong.sum()))
    return tok
