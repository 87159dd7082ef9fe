"""Export a trained neural phaser: weights, ONNX (any number of trials per call) and model card.

    python -m aisolve.models.export_phaser runs/phaser/best.pt --out models/weights

Writes phase_net.pt (the weights and the network's configuration), phase_net.onnx and
phase_net.card.json (training command, validation history, ONNX-vs-torch difference).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.models.data.phaser_samples import GRID_SHAPE
from aisolve.models.export_elements import strip_stack_traces
from aisolve.models.neural_phaser import ONNX_FILE, PhaseNetRunner, TORCH_FILE

NAME = "phase_net"


def example_inputs(batch: int, seed: int = 0):
    import torch
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(batch, *GRID_SHAPE, generator=g) * 2
    mask = (torch.rand(batch, *GRID_SHAPE, generator=g) < 0.8).float()
    present = torch.ones(batch, *GRID_SHAPE)
    inv_d = torch.rand(batch, *GRID_SHAPE, generator=g)
    signs = torch.where(torch.rand(batch, *GRID_SHAPE, generator=g) < 0.5, -1.0, 1.0) * mask
    return e * mask, mask, inv_d, signs, present


def export_onnx(model, path: Path) -> None:
    import torch
    model.eval()
    trials = torch.export.Dim("trials", min=1, max=4096)
    shapes = {name: {0: trials} for name in PhaseNetRunner.INPUTS}
    torch.onnx.export(model, example_inputs(3), str(path), input_names=list(PhaseNetRunner.INPUTS),
                      output_names=["logits"], dynamic_shapes=shapes, dynamo=True, opset_version=18,
                      external_data=False)
    strip_stack_traces(path)


def max_difference(model, onnx_path: Path) -> float:
    import torch

    from aisolve.models.inference import onnx_session
    inputs = example_inputs(5, seed=1)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    got = onnx_session(onnx_path, "cpu").run(None, {k: v.numpy() for k, v in zip(PhaseNetRunner.INPUTS, inputs)})[0]
    return float(np.abs(ref - got).max())


def model_card(saved: dict, onnx_difference: float) -> dict:
    state, cfg = saved["state"], saved["train_config"]
    best = next((h for h in state["history"] if h["step"] == state.get("best_step")), None)
    return {
        "model": "neural phaser: FFT-mixed unrolled density modification (24^3 real-space 3D CNN, per-reflection "
                 "head odd in sign) over PhAI's 1,205-reflection P2_1/c grid, recycled",
        "outputs": "sign logit per reflection of the grid (> 0: phase 0), measured or not (phase extension)",
        "architecture": saved["net"],
        "parameters": int(sum(np.prod(v.shape) for v in saved["model"].values())),
        "training": {
            "data": "on the fly: NCI molecules (RDKit ETKDG conformers, <= 14 non-H atoms, first "
                    f"{cfg['n_smiles']} SMILES, train-split scaffolds) in random P2_1/c cells with edges <= 10 A; "
                    "Uiso 0.005-0.06, d_min 0-2 A, 0-15 % of reflections dropped",
            "preset": cfg["preset"], "seed": cfg["seed"], "p_denoise": cfg["p_denoise"],
            "recycling_cycles": f"1-{cfg['max_cycles']}, gradient through the last only",
            "best_step": state.get("best_step"), "steps_run": state["step"], "seconds": round(state["seconds"]),
            "minutes_budget": cfg["minutes"],
            "checkpoint_choice": "best validation success rate (map correlation >= 0.95 at the best origin, "
                                 "one random start, fixed val-split samples at d_min 1.0-2.0 A)",
            "command": f"python -m aisolve.models.train_phaser --out runs/phaser --preset {cfg['preset']} "
                       f"--minutes {cfg['minutes']:g} --seed {cfg['seed']} --n-smiles {cfg['n_smiles']} "
                       f"--p-denoise {cfg['p_denoise']:g} --max-cycles {cfg['max_cycles']}",
        },
        "validation_at_best": best,
        "validation_curve": state["history"],
        "onnx": {"file": ONNX_FILE, "opset": 18, "max_abs_logit_difference_vs_torch": onnx_difference},
        "split": "NCI molecules by Murcko scaffold (split seed 0); no training CIF and no real experimental "
                 "data set was used for training or checkpoint choice",
    }


def main(argv=None) -> int:
    import torch

    from aisolve.models.phase_net import PhaseNet, PhaseNetConfig
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--note", default="", help="what the card should say about this run beyond the log")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    model = PhaseNet(PhaseNetConfig(**saved["net"]))
    model.load_state_dict(saved["model"])
    model.eval()
    torch.save({"model": model.state_dict(), "net": saved["net"]}, out / TORCH_FILE)
    export_onnx(model, out / ONNX_FILE)
    diff = max_difference(model, out / ONNX_FILE)
    card = model_card(saved, diff)
    if a.note:
        card["note"] = a.note
    (out / f"{NAME}.card.json").write_text(json.dumps(card, indent=1))
    print(json.dumps({"onnx": str(out / ONNX_FILE), "max_abs_logit_difference": diff,
                      "best_step": card["training"]["best_step"], "best_val": card["validation_at_best"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
