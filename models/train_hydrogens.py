"""Train the hydrogen network (H count per non-H atom) on examples from models/h_data.py.

    python -m aisolve.models.h_data --cif-dir ../shared/data/training-cifs --smiles 3000 -o data/h_examples.pkl
    python -m aisolve.models.train_hydrogens --data data/h_examples.pkl --out runs/hydrogens --minutes 30

The body is the element network's (torchmd-net's Equivariant Transformer over the atoms and their
symmetry context within 3.2 A) with a 5-class head (0-4 H). Inputs: positions, element tokens, Ueq
over the structure's median, and the cell contents' composition for 70 % of the graphs (unknown
otherwise). Resumable; best weights on the val split (atom accuracy).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.models.element_net import NetConfig
from aisolve.models.h_data import N_H_CLASSES, load_saved
from aisolve.models.train_elements import collate, fit_node_classifier
from aisolve.models.training import RunConfig

PRESETS = {
    "cpu": dict(net=NetConfig(hidden=64, layers=3, rbf=32, heads=8, n_classes=N_H_CLASSES), batch_nodes=3000,
                lr=1e-3),
    "gpu": dict(net=NetConfig(hidden=128, layers=6, rbf=50, heads=8, n_classes=N_H_CLASSES), batch_nodes=20000,
                lr=5e-4),
}


@dataclass(kw_only=True)
class HTrainConfig(RunConfig):
    data: str
    minutes: float = 30.0


def split(examples, name: str):
    return [ex for ex in examples if ex.meta.get("split") == name]


def predict_counts(model, examples, device, with_contents: bool = True) -> list[np.ndarray]:
    """Per example, the (n_asu, 5) probabilities of 0-4 H."""
    import torch
    model.eval()
    out = []
    with torch.no_grad():
        for k in range(0, len(examples), 32):
            chunk = examples[k:k + 32]
            inputs = collate(chunk, [ex.meta["tokens"] for ex in chunk], [with_contents] * len(chunk), device)
            probs = torch.softmax(model(*inputs[:5], edge_index=inputs[5])[inputs[6]], dim=1).cpu().numpy()
            start = 0
            for ex in chunk:
                out.append(probs[start:start + ex.n_asu])
                start += ex.n_asu
    return out


def evaluate(model, examples, device, with_contents: bool = True) -> dict:
    right = total = all_right = 0
    for ex, p in zip(examples, predict_counts(model, examples, device, with_contents)):
        ok = p.argmax(axis=1) == ex.label
        right += int(ok.sum())
        total += len(ok)
        all_right += bool(ok.all())
    return {"atom_accuracy": right / max(total, 1), "structures_all_right": all_right / max(len(examples), 1),
            "n_structures": len(examples), "n_atoms": total}


def train(cfg: HTrainConfig, log=print) -> dict:
    t0 = time.monotonic()
    examples = load_saved(cfg.data)
    train_set, val_set = split(examples, "train"), split(examples, "val")
    log(f"loaded {len(train_set)} train and {len(val_set)} val structures in {time.monotonic() - t0:.0f} s")
    return fit_node_classifier(cfg, PRESETS[cfg.preset], train_set, val_set,
                               lambda chunk, rng, nprng: [ex.meta["tokens"] for ex in chunk], evaluate, log)


def main(argv=None) -> int:
    from aisolve.models.training import common_options, print_outcome, training_parser
    p = training_parser(__doc__.splitlines()[0], PRESETS, 30.0)
    p.add_argument("--data", required=True, help="examples file from models/h_data.py")
    a = p.parse_args(argv)
    print_outcome(train(HTrainConfig(data=a.data, **common_options(a))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
