"""The training loop the networks share: AdamW, warm-up and cosine decay over a time or step budget,
resumable checkpoints, and the best weights chosen on the validation split.

A network's trainer supplies `make_step(rng, nprng)` (returns a function that runs one batch and
returns its loss tensor) and `validate()` (returns metrics; `score_key` names the one to maximise).
`checkpoint.pt` is written every few minutes and on exit, `best.pt` at each new best score; a run
started again on the same folder resumes where it stopped, with the same random streams.
"""
from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(kw_only=True)
class RunConfig:
    """What every training run is told; each trainer's config adds its data and its own knobs."""
    out: str
    preset: str = "cpu"
    minutes: float = 60.0
    max_steps: int = 100_000
    seed: int = 0
    p_contents: float = 0.7  # share of graphs shown with their cell contents
    eval_every: int = 200
    checkpoint_seconds: float = 300.0
    device: str = "cpu"
    init: str | None = None  # weights (.pt with a "model" entry) to start from instead of random ones
    lr: float | None = None  # peak learning rate; None: the preset's (lower suits fine-tuning from --init)


def fit(model, cfg: RunConfig, lr: float, make_step: Callable, validate: Callable[[], dict], saved_config: dict,
        score_key: str = "atom_accuracy", log=print) -> dict:
    """Train `model` for the run `cfg` describes (`lr`: the preset's peak rate unless cfg.lr says)."""
    import torch
    lr = cfg.lr or lr
    out, minutes, max_steps, eval_every, seed = Path(cfg.out), cfg.minutes, cfg.max_steps, cfg.eval_every, cfg.seed
    checkpoint_seconds, device = cfg.checkpoint_seconds, cfg.device
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    state = {"step": 0, "best": -1.0, "history": [], "seconds": 0.0}
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        rng.setstate(saved["rng"])
        nprng = np.random.default_rng(saved["nprng_seed"])
        log(f"resumed at step {state['step']}")
    elif cfg.init:
        model.load_state_dict(torch.load(cfg.init, map_location=device, weights_only=False)["model"])
        log(f"started from the weights in {cfg.init}")

    def save(path: Path) -> None:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "rng": rng.getstate(), "nprng_seed": int(nprng.integers(1 << 62)), **saved_config}, path)

    budget = minutes * 60

    def lr_factor() -> float:
        # warm-up, then a cosine decay over the run's budget (steps or minutes, whichever ends first)
        done = min(1.0, max(state["step"] / max_steps, state["seconds"] / budget))
        return min(1.0, (state["step"] + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done)))

    # the time budget is the whole run's: a resumed run gets what is left of it
    deadline = time.monotonic() + budget - state["seconds"]
    last_save = time.monotonic()
    start_seconds = state["seconds"]
    session_start = time.monotonic()
    step = make_step(rng, nprng)
    loss_avg = None
    model.train()
    while state["step"] < max_steps and time.monotonic() < deadline:
        for group in opt.param_groups:
            group["lr"] = lr * lr_factor()
        loss = step()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        state["step"] += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        state["seconds"] = start_seconds + time.monotonic() - session_start
        if state["step"] % eval_every == 0:
            metrics = validate()
            model.train()
            record = {"step": state["step"], "loss": round(loss_avg, 4), "seconds": round(state["seconds"]),
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}}
            state["history"].append(record)
            log(json.dumps(record))
            if metrics[score_key] > state["best"]:
                state["best"] = metrics[score_key]
                state["best_step"] = state["step"]
                save(out / "best.pt")
        if time.monotonic() - last_save > checkpoint_seconds:
            save(ckpt)
            last_save = time.monotonic()
    save(ckpt)
    return state


def training_parser(description: str, presets, minutes: float):
    """The command-line options every trainer has (the data option is the trainer's own)."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True)
    p.add_argument("--preset", choices=sorted(presets), default="cpu")
    p.add_argument("--minutes", type=float, default=minutes)
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--device", default="cpu")
    p.add_argument("--init", help="start from these weights (a .pt file with a 'model' entry, same architecture)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    return p


def common_options(a) -> dict:
    return dict(out=a.out, preset=a.preset, minutes=a.minutes, max_steps=a.max_steps, seed=a.seed,
                eval_every=a.eval_every, device=a.device, init=a.init, lr=a.lr)


def print_outcome(state: dict) -> None:
    print(json.dumps({"step": state["step"], "best": state["best"], "best_step": state.get("best_step")}))
