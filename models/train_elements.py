"""Train the element network on generated peak graphs; resumable; checkpoint chosen on the val split.

    python -m aisolve.models.train_elements --data /data/gen --out runs/elements --preset cpu --minutes 60

Each step samples a batch of graphs up to a node budget. Half the batches train the first pass
(all tokens unknown), half the second (tokens = truth with a share of mistakes, as the first pass
would give them); cell contents are shown for 70 % of the graphs and hidden otherwise, so one
model serves both cases. The loss is cross-entropy on asymmetric-unit peaks (context nodes are
copies and are not scored). `checkpoint.pt` is written every few minutes and on exit; `best.pt`
holds the weights with the best validation accuracy (two-pass decoding, with contents).
"""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.models.element_data import Example, load_examples, thin_non_atoms, tokens_for_pass_two
from aisolve.models.element_net import (N_CLASSES, UNKNOWN_TOKEN, ElementNet, NetConfig,
                                        composition_vector)
from aisolve.models.training import RunConfig

PRESETS = {
    # 2 CPU cores, about an hour
    "cpu": dict(net=NetConfig(hidden=64, layers=4, rbf=32, heads=8), batch_nodes=3000, lr=1e-3),
    # one GPU: wider and deeper, bigger batches
    "gpu": dict(net=NetConfig(hidden=128, layers=6, rbf=50, heads=8), batch_nodes=20000, lr=5e-4),
}


@dataclass(kw_only=True)
class TrainConfig(RunConfig):
    data: list[str]
    p_pass_two: float = 0.5
    token_noise: float = 0.15
    p_thin: float = 0.0  # share of graphs shown with some of their noise peaks removed (thin_non_atoms)
    not_atom_weight: float = 1.0  # cross-entropy weight of 'not an atom' (below 1: missing an atom costs more)


def collate(examples: list[Example], tokens: list[np.ndarray], contents_known: list[bool], device):
    """One batch: node tensors concatenated, edges offset, per-graph compositions."""
    import torch
    pos, height, token, batch, edges, asu, labels, comps = [], [], [], [], [], [], [], []
    offset = 0
    for g, (ex, tok, known) in enumerate(zip(examples, tokens, contents_known)):
        n = len(ex.pos)
        pos.append(ex.pos)
        height.append(ex.height)
        token.append(tok[ex.source])
        batch.append(np.full(n, g))
        edges.append(ex.edges + offset)
        asu.append(np.arange(ex.n_asu) + offset)
        labels.append(ex.label)
        comps.append(composition_vector(ex.contents if known else None))
        offset += n
    t = lambda a, dt: torch.as_tensor(np.concatenate(a), dtype=dt, device=device)  # noqa: E731
    return (t(pos, torch.float32), t(token, torch.long), t(height, torch.float32),
            torch.stack(comps).to(device), t(batch, torch.long),
            torch.as_tensor(np.ascontiguousarray(np.concatenate(edges, axis=1)), dtype=torch.long, device=device),
            t(asu, torch.long), t(labels, torch.long))


def _contents_z(ex: Example) -> list[int]:
    from aisolve.core.elements import ATOMIC_NUMBER
    return [ATOMIC_NUMBER[e] for e, n in ex.contents.items() if n > 0 and e not in ("H", "D")]


def _batches(examples: list[Example], budget: int, rng: random.Random):
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        batch, nodes = [], 0
        for i in order:
            n = len(examples[i].pos)
            if batch and nodes + n > budget:
                yield batch
                batch, nodes = [], 0
            batch.append(examples[i])
            nodes += n
        if batch:
            yield batch


def evaluate(model, examples: list[Example], device, with_contents: bool = True) -> dict:
    """Two-pass argmax decoding (restricted to the contents' elements when shown): atom and structure accuracy."""
    import torch

    from aisolve.models.element_decode import allowed_mask, second_pass_tokens
    model.eval()
    right = total = all_right = 0
    with torch.no_grad():
        for k in range(0, len(examples), 16):
            chunk = examples[k:k + 16]
            unknown = [np.full(ex.n_asu, UNKNOWN_TOKEN) for ex in chunk]
            inputs = collate(chunk, unknown, [with_contents] * len(chunk), device)
            logits = model(*inputs[:5], edge_index=inputs[5])
            masks = [allowed_mask(ex.contents if with_contents else None) for ex in chunk]
            first = _split_predictions(logits, inputs[6], chunk, masks)
            tokens = [second_pass_tokens(p) for p in first]
            inputs = collate(chunk, tokens, [with_contents] * len(chunk), device)
            logits = model(*inputs[:5], edge_index=inputs[5])
            for ex, pred in zip(chunk, _split_predictions(logits, inputs[6], chunk, masks)):
                atoms = ex.label > 0
                ok = pred[atoms] == ex.label[atoms]
                right += int(ok.sum())
                total += int(atoms.sum())
                all_right += bool(ok.all())
    model.train()
    return {"atom_accuracy": right / max(total, 1), "structures_all_right": all_right / max(len(examples), 1),
            "n_structures": len(examples), "n_atoms": total}


def _split_predictions(logits, asu_index, chunk, masks) -> list[np.ndarray]:
    import torch
    out, start = [], 0
    asu_logits = logits[asu_index]
    for ex, mask in zip(chunk, masks):
        block = asu_logits[start:start + ex.n_asu]
        start += ex.n_asu
        block = block.masked_fill(~torch.as_tensor(mask, device=block.device), -1e9)
        out.append(block.argmax(dim=1).cpu().numpy())
    return out


def fit_node_classifier(cfg: RunConfig, preset: dict, train_set: list, val_set: list, tokens_for, evaluate_fn,
                        log=print, augment=None, class_weights=None) -> dict:
    """The training both ElementNet-bodied networks share: per step a batch of graphs, each shown with
    its cell contents at the rate cfg.p_contents, node tokens from `tokens_for(chunk, rng, nprng)`,
    cross-entropy on the asymmetric-unit nodes; `evaluate_fn(model, val_set, device)` picks the best.
    `augment(chunk, rng, nprng)`, if given, changes a batch's graphs before anything else;
    `class_weights` (a tensor over the classes) weights the cross-entropy."""
    import torch

    from aisolve.models.training import fit
    net_cfg: NetConfig = preset["net"]
    torch.manual_seed(cfg.seed)
    model = ElementNet(net_cfg).to(cfg.device)
    weight = None if class_weights is None else class_weights.to(cfg.device)

    def make_step(rng, nprng):
        batches = _batches(train_set, preset["batch_nodes"], rng)

        def step():
            chunk = next(batches)
            if augment is not None:
                chunk = augment(chunk, rng, nprng)
            tokens = tokens_for(chunk, rng, nprng)
            known = [rng.random() < cfg.p_contents for _ in chunk]
            pos, tok, h, comp, b, edges, asu, labels = collate(chunk, tokens, known, cfg.device)
            logits = model(pos, tok, h, comp, b, edge_index=edges)[asu]
            return torch.nn.functional.cross_entropy(logits, labels, weight=weight)
        return step

    return fit(model, cfg, preset["lr"], make_step, lambda: evaluate_fn(model, val_set, cfg.device),
               {"net": net_cfg.as_dict(), "train_config": asdict(cfg)}, log=log)


def train(cfg: TrainConfig, log=print) -> dict:
    preset = PRESETS[cfg.preset]
    cutoff = preset["net"].cutoff
    t0 = time.monotonic()
    train_set = load_examples(cfg.data, "train", cutoff)
    val_set = load_examples(cfg.data, "val", cutoff)
    log(f"loaded {len(train_set)} train and {len(val_set)} val graphs in {time.monotonic() - t0:.0f} s")

    def tokens_for(chunk, rng, nprng):
        # pass two: the peaks' own elements, noised, as tokens; else every token unknown
        if rng.random() < cfg.p_pass_two:
            return [tokens_for_pass_two(ex.label, nprng, _contents_z(ex), cfg.token_noise) for ex in chunk]
        return [np.full(ex.n_asu, UNKNOWN_TOKEN) for ex in chunk]

    def augment(chunk, rng, nprng):
        return [thin_non_atoms(ex, rng.random(), nprng) if rng.random() < cfg.p_thin else ex for ex in chunk]

    import torch
    weights = torch.ones(N_CLASSES)
    weights[0] = cfg.not_atom_weight
    return fit_node_classifier(cfg, preset, train_set, val_set, tokens_for, evaluate, log, augment, weights)


def main(argv=None) -> int:
    from aisolve.models.training import common_options, print_outcome, training_parser
    p = training_parser(__doc__.splitlines()[0], PRESETS, 60.0)
    p.add_argument("--data", nargs="+", required=True, help="generated data sets (directories with manifest.json)")
    p.add_argument("--p-thin", type=float, default=0.0, help="share of graphs with some noise peaks removed")
    p.add_argument("--not-atom-weight", type=float, default=1.0, help="cross-entropy weight of 'not an atom'")
    a = p.parse_args(argv)
    print_outcome(train(TrainConfig(data=a.data, p_thin=a.p_thin, not_atom_weight=a.not_atom_weight,
                                    **common_options(a))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
