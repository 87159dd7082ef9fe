"""Element network: TorchMD-Net's Equivariant Transformer over density peaks, one class per peak.

The representation is torchmd-net's own (`TorchMD_ET`: embedding, neighbour embedding, equivariant
attention layers, output norm); only its Warp neighbour list is replaced by a pure-torch radius
graph, so that the model exports to ONNX, and two of its data-dependent branches are avoided
(see `_ExportableAttention` and `_ExportableNeighbourEmbedding`).

Node inputs: Cartesian position, normalised peak height, an element token (unknown on the first
pass; the first pass's prediction on the second) and the cell contents as a composition vector
shared by the nodes of a graph (all zeros with the `known` flag off when there is no formula).
Outputs: logits over N_CLASSES classes, 0 = "not an atom", k = the element with Z = k.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

MAX_Z = 94
N_CLASSES = MAX_Z + 1  # 0: not an atom
UNKNOWN_TOKEN = 0
NOT_ATOM_TOKEN = MAX_Z + 1  # a second-pass token: "the first pass called this no atom"
N_TOKENS = MAX_Z + 2
COMPOSITION_SIZE = MAX_Z + 1  # fractions of Z = 1..94, then the 'known' flag


@dataclass
class NetConfig:
    hidden: int = 64
    layers: int = 4
    rbf: int = 32
    heads: int = 8
    cutoff: float = 3.2  # A; equals the context radius, so an asymmetric-unit node sees all its neighbours
    n_classes: int = N_CLASSES  # outputs per node (the hydrogen network uses the same body with 5)

    def as_dict(self) -> dict:
        return asdict(self)


def _et_classes():
    # Warp, imported by torchmd-net, prints a banner on stdout: keep it off our protocol and CLI output.
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        from torchmdnet.models.torchmd_et import EquivariantMultiHeadAttention, TorchMD_ET
        from torchmdnet.models.utils import NeighborEmbedding
    return TorchMD_ET, EquivariantMultiHeadAttention, NeighborEmbedding


def _exportable_classes():
    _, attention, neighbour = _et_classes()

    class _ExportableAttention(attention):
        """torchmd-net's layer with the node count passed to its scatter (it calls .item() otherwise)."""

        def propagate(self, edge_index, q, k, v, vec, dk, dv, r_ij, d_ij, dim_size):
            # as torchmd-net's, with plain indexing and a materialised scatter (see _sum_into)
            i, j = edge_index[1], edge_index[0]
            x, dvec = self.message(q[i], k[j], v[j], vec[j], dk, dv, r_ij, d_ij)
            return _sum_into(x, i, q.size(0)), _sum_into(dvec, i, q.size(0))

    class _ExportableNeighbourEmbedding(neighbour):
        """torchmd-net's neighbour embedding without its `if not mask.all()` branch: our radius graph
        has no self loops, so the branch is never taken and only blocks export."""

        def forward(self, z, x, edge_index, edge_weight, edge_attr):
            c = self.cutoff(edge_weight)
            w = self.distance_proj(edge_attr) * c.view(-1, 1)
            msg = w * self.embedding(z)[edge_index[1]]
            agg = _sum_into(msg, edge_index[0], z.shape[0])
            return self.combine(torch.cat([x, agg], dim=1))

    return _ExportableAttention, _ExportableNeighbourEmbedding


def _sum_into(src: Tensor, index: Tensor, size) -> Tensor:
    """Rows of `src` summed into `size` rows by `index`.

    The index is materialised rather than expanded, and the model gathers with plain indexing
    instead of index_select: index_add and index_select's backward go through torch's CPU fast
    path for expanded indices (fbgemm's OpenMP radix sort), which corrupted the heap in processes
    that also load cctbx (torch 2.13.0; reproduced under gdb in gomp_team_end).
    """
    full = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src).contiguous()
    return torch.zeros((size,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device).scatter_add(0, full, src)


def radius_edges(pos: Tensor, batch: Tensor, cutoff: float) -> Tensor:
    """(2, E) pairs of distinct nodes of one graph closer than `cutoff` (dense; exports to ONNX)."""
    diff = pos.unsqueeze(0) - pos.unsqueeze(1)
    d2 = (diff * diff).sum(dim=-1)  # exact squares: cdist's matmul form goes negative for coincident points
    same = batch.unsqueeze(0) == batch.unsqueeze(1)
    eye = torch.eye(pos.shape[0], dtype=torch.bool, device=pos.device)
    return torch.nonzero(same & (d2 < cutoff * cutoff) & ~eye).t()


class ElementNet(nn.Module):
    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        cfg = cfg or NetConfig()
        self.cfg = cfg
        et_class, _, _ = _et_classes()
        attention, neighbour = _exportable_classes()
        self.et = et_class(hidden_channels=cfg.hidden, num_layers=cfg.layers, num_rbf=cfg.rbf,
                           num_heads=cfg.heads, cutoff_upper=cfg.cutoff, max_z=N_TOKENS)
        # same parameters, export-friendly methods
        for layer in self.et.attention_layers:
            layer.__class__ = attention
        self.et.neighbor_embedding.__class__ = neighbour
        self.height_proj = nn.Linear(2, cfg.hidden)
        self.composition_proj = nn.Linear(COMPOSITION_SIZE, cfg.hidden)
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.n_classes))

    def forward(self, pos: Tensor, token: Tensor, height: Tensor, composition: Tensor, batch: Tensor,
                edge_index: Tensor | None = None) -> Tensor:
        """Logits (n, cfg.n_classes). `composition` is (n_graphs, COMPOSITION_SIZE); `edge_index` may be
        given precomputed (training), else the radius graph is built here (inference, export)."""
        et = self.et
        if edge_index is None:
            edge_index = radius_edges(pos, batch, self.cfg.cutoff)
        vec_ij = pos[edge_index[0]] - pos[edge_index[1]]
        dist = torch.sqrt((vec_ij * vec_ij).sum(dim=1) + 1e-12)
        edge_attr = et.distance_expansion(dist)
        unit = vec_ij / dist.unsqueeze(1)
        h = height.clamp(min=1e-3).unsqueeze(1)
        x = et.embedding(token) + self.height_proj(torch.cat([h, torch.log(h)], dim=1)) \
            + self.composition_proj(composition)[batch]
        x = et.neighbor_embedding(token, x, edge_index, dist, edge_attr)
        vec = torch.zeros(x.size(0), 3, x.size(1), device=x.device, dtype=x.dtype)
        for layer in et.attention_layers:
            dx, dvec = layer(x, vec, edge_index, dist, edge_attr, unit)
            x = x + dx
            vec = vec + dvec
        return self.head(et.out_norm(x))


def composition_vector(contents: dict[str, float] | None) -> torch.Tensor:
    """Fractions of the non-H elements of the cell contents, plus a 'known' flag (all zero: unknown)."""
    from aisolve.core.elements import ATOMIC_NUMBER
    v = torch.zeros(COMPOSITION_SIZE)
    if not contents:
        return v
    heavy = {ATOMIC_NUMBER[e]: n for e, n in contents.items()
             if n > 0 and e not in ("H", "D") and ATOMIC_NUMBER.get(e, 99) <= MAX_Z}
    total = sum(heavy.values())
    if total <= 0:
        return v
    for z, n in heavy.items():
        v[z - 1] = n / total
    v[-1] = 1.0
    return v
