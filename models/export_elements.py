"""Export a trained network (element or hydrogen) to ONNX (dynamic node count) with weights and model card.

    python -m aisolve.models.export_elements runs/elements/best.pt --out models/weights
    python -m aisolve.models.export_elements runs/hydrogens/best.pt --out models/weights --kind hydrogens

Writes NAME.onnx (ONNX Runtime inference), NAME.pt (state dict + config, for the torch fallback
and fine-tuning) and NAME.card.json (NAME: element_net or hydrogen_net), and checks that ONNX and
torch give the same logits on a random graph.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)

INPUT_NAMES = ["pos", "token", "height", "composition", "batch"]


def example_inputs(n: int = 60, seed: int = 0):
    import torch

    from aisolve.models.element_net import composition_vector
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=g) * 8.0
    token = torch.zeros(n, dtype=torch.long)
    height = torch.rand(n, generator=g) + 0.5
    comp = composition_vector({"C": 12, "N": 2, "O": 3}).unsqueeze(0)
    batch = torch.zeros(n, dtype=torch.long)
    return pos, token, height, comp, batch


def export_onnx(model, path: Path) -> None:
    import torch
    model.eval()
    n = torch.export.Dim("nodes", min=2, max=100_000)
    shapes = {"pos": {0: n}, "token": {0: n}, "height": {0: n}, "composition": {}, "batch": {0: n}}
    torch.onnx.export(model, example_inputs(), str(path), input_names=INPUT_NAMES, output_names=["logits"],
                      dynamic_shapes=shapes, dynamo=True, opset_version=18, external_data=False)
    strip_stack_traces(path)


def strip_stack_traces(path: Path) -> None:
    """Drop the exporter's per-node Python stack traces: they name files of the exporting machine's
    checkout and play no part in inference."""
    import onnx
    model = onnx.load(str(path))
    for graph_nodes in [model.graph.node] + [f.node for f in model.functions]:
        for node in graph_nodes:
            keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
    onnx.save(model, str(path))


def load_checkpoint(path: Path):
    import torch

    from aisolve.models.element_net import ElementNet, NetConfig
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = ElementNet(NetConfig(**saved["net"]))
    model.load_state_dict(saved["model"])
    model.eval()
    return model, saved


def max_difference(model, onnx_path: Path, n: int = 150) -> float:
    import onnxruntime as ort
    import torch
    inputs = example_inputs(n, seed=1)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in zip(INPUT_NAMES, inputs)})[0]
    return float(np.abs(ref - got).max())


def main(argv=None) -> int:
    import torch
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=sorted(KINDS), default="elements")
    p.add_argument("--note", default="", help="what the card should say about this run beyond the log")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = KINDS[a.kind]["name"]
    model, saved = load_checkpoint(Path(a.checkpoint))
    torch.save({"model": model.state_dict(), "net": saved["net"]}, out / f"{name}.pt")
    export_onnx(model, out / f"{name}.onnx")
    diff = max_difference(model, out / f"{name}.onnx")
    card = model_card(saved, diff, a.kind)
    if a.note:
        card["note"] = a.note
    (out / f"{name}.card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps({"onnx": str(out / f"{name}.onnx"), "max_abs_logit_difference": diff,
                      "best_step": card["training"]["best_step"], "best_val": card["validation_at_best"]}))
    return 0


KINDS = {
    "elements": {"name": "element_net", "trainer": "train_elements",
                 "model": "element network: torchmd-net Equivariant Transformer over density peaks + per-peak "
                          "classifier",
                 "classes": "0 = not an atom, k = element with Z = k (k <= 94)",
                 "choice": "best validation atom accuracy (two-pass decoding, with contents)"},
    "hydrogens": {"name": "hydrogen_net", "trainer": "train_hydrogens",
                  "model": "hydrogen network: torchmd-net Equivariant Transformer over refined non-H atoms + "
                           "per-atom H-count classifier",
                  "classes": "k = k riding H (0-4)",
                  "choice": "best validation atom accuracy (argmax, with contents)"},
}


def _extra_options(cfg: dict) -> str:
    """The trainer's options that were not left at their defaults, as command-line flags."""
    flags = {"p_thin": ("--p-thin", 0.0), "not_atom_weight": ("--not-atom-weight", 1.0), "lr": ("--lr", None)}
    out = "".join(f" {flag} {cfg[key]:g}" for key, (flag, default) in flags.items()
                  if cfg.get(key) is not None and cfg[key] != default)
    return out + (f" --init {cfg['init']}" if cfg.get("init") else "")


def model_card(saved: dict, onnx_difference: float, kind: str = "elements") -> dict:
    """What the weights are, how they were made, and how they scored on the validation split."""
    state, cfg = saved["state"], saved["train_config"]
    k = KINDS[kind]
    best = next((h for h in state["history"] if h["step"] == state.get("best_step")), None)
    data = " ".join(cfg["data"]) if isinstance(cfg["data"], list) else cfg["data"]
    return {
        "model": k["model"],
        "classes": k["classes"],
        "architecture": saved["net"],
        "training": {"data": cfg["data"], "preset": cfg["preset"], "seed": cfg["seed"],
                     "best_step": state.get("best_step"), "steps_run": state["step"],
                     "seconds": round(state["seconds"]), "minutes_budget": cfg["minutes"],
                     "checkpoint_choice": k["choice"],
                     "command": f"python -m aisolve.models.{k['trainer']} --data {data} "
                                f"--out {cfg['out']} --preset {cfg['preset']} --minutes {cfg['minutes']:g} "
                                f"--seed {cfg['seed']}" + _extra_options(cfg)},
        "validation_at_best": best,
        "onnx": {"file": f"{k['name']}.onnx", "opset": 18, "max_abs_logit_difference_vs_torch": onnx_difference},
        "split": "by compound (formula for real CIFs, Murcko scaffold for SMILES), split seed 0; "
                 "real experimental data sets were never used for training or checkpoint choice",
    }


if __name__ == "__main__":
    raise SystemExit(main())
