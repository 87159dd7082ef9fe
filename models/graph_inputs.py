"""Peak graphs as network inputs: asymmetric-unit peaks plus their symmetry context nodes.

CrystalX feeds the network the peaks of the asymmetric unit and, as context, every symmetry or
lattice equivalent of a peak that lies within 3.2 A of one of them (intermolecular contacts,
hydrogen bonds). Context nodes carry the features of the peak they copy and are not scored. The
number of context nodes is whatever the geometry gives: nothing is capped silently; a graph that
would exceed `max_nodes` raises.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from cctbx import sgtbx, uctbx

from aisolve.core.elements import ATOMIC_NUMBER

CONTEXT_RADIUS = 3.2  # A
UNKNOWN_TOKEN = 0  # element token when the cell contents do not say
PEAK_FACTOR = 1.3  # a graph holds the map's int(1.3 n) + 3 highest peaks for n atoms in the asymmetric unit
PEAK_MIN_HEIGHT = 0.5  # sigma


def graph_peak_count(n_atoms: int) -> int:
    """How many peaks a graph of a structure with `n_atoms` asymmetric-unit atoms holds (training and inference)."""
    return int(PEAK_FACTOR * n_atoms) + 3


@dataclass
class GraphInput:
    pos: np.ndarray  # (n, 3) Cartesian A; the first n_asu rows are the asymmetric-unit peaks
    height: np.ndarray  # (n,) peak height / median atom-peak height of the graph
    token: np.ndarray  # (n,) int: an element of the cell contents (see contents_tokens) or UNKNOWN_TOKEN
    source: np.ndarray  # (n,) index of the asymmetric-unit peak each node copies
    n_asu: int


def contents_tokens(contents: dict[str, float]) -> list[int]:
    """Atomic numbers of the non-H elements the cell contents name (the candidates a token may take)."""
    return sorted(ATOMIC_NUMBER[e] for e, n in contents.items() if n > 0 and e not in ("H", "D"))


def _without_duplicates(pos: np.ndarray, src: np.ndarray, n_asu: int) -> tuple[np.ndarray, np.ndarray]:
    """One node per place: a peak on a special position has copies from several operators that coincide."""
    from scipy.spatial import cKDTree
    pairs = cKDTree(pos).query_pairs(r=1e-3, output_type="ndarray")
    drop = {int(j) for i, j in pairs if j >= n_asu}  # query_pairs gives i < j: keep the first
    if not drop:
        return pos, src
    keep = np.array([k for k in range(len(pos)) if k not in drop])
    return pos[keep], src[keep]


def build_input(xyz_frac: np.ndarray, height: np.ndarray, cell: tuple[float, ...], hall: str,
                tokens: np.ndarray | None = None, radius: float = CONTEXT_RADIUS,
                max_nodes: int = 4096) -> GraphInput:
    """Nodes for one graph: the peaks, then every symmetry/lattice copy within `radius` of any peak."""
    uc = uctbx.unit_cell(cell)
    group = sgtbx.space_group(hall)
    orth = np.array(uc.orthogonalization_matrix()).reshape(3, 3)
    n = len(xyz_frac)
    base_cart = xyz_frac @ orth.T
    nodes = [base_cart]
    sources = [np.arange(n)]
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)
    centre = xyz_frac.mean(axis=0)
    for op in group.all_ops():
        r = np.array(op.r().as_double()).reshape(3, 3)
        t = np.array(op.t().as_double())
        moved = xyz_frac @ r.T + t
        # bring the copy next to the asymmetric unit, then look one cell around
        moved += np.round(centre - moved.mean(axis=0))
        for shift in shifts:
            cand = (moved + shift) @ orth.T
            d = np.linalg.norm(cand[:, None, :] - base_cart[None, :, :], axis=2)
            # within reach of the asymmetric unit, and not a peak of it (the identity copy, or a
            # peak on a special position mapped onto itself)
            keep = (d.min(axis=1) < radius) & (d.min(axis=1) > 1e-3)
            if keep.any():
                nodes.append(cand[keep])
                sources.append(np.flatnonzero(keep))
    pos = np.concatenate(nodes)
    src = np.concatenate(sources)
    pos, src = _without_duplicates(pos, src, n)
    if len(pos) > max_nodes:
        raise ValueError(f"graph needs {len(pos)} nodes (max_nodes={max_nodes}): raise the limit or "
                         f"lower the context radius")
    atomish = height[height > 0]
    scale = float(np.median(atomish)) if atomish.size else 1.0
    tok = np.zeros(n, dtype=np.int64) if tokens is None else np.asarray(tokens, dtype=np.int64)
    return GraphInput(pos=pos.astype(np.float32), height=(height[src] / scale).astype(np.float32),
                      token=tok[src], source=src, n_asu=n)
