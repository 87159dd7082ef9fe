"""Train the neural phaser (models/phase_net.py) on P2_1/c samples made on the fly.

    python -m aisolve.models.train_phaser --out runs/phaser --minutes 90

Samples: NCI molecules (RDKit conformers, <= 14 heavy atoms) in random P2_1/c cells with edges
<= 10 A, Uiso 0.005-0.06, d_min 0-2 A, up to 15 % of the reflections dropped (models/data/
phaser_samples.py). Molecules are split by Murcko scaffold (models/data/generate.split_of): the
train split feeds training, a fixed set of val-split samples picks the best weights.

Each step starts from random signs and runs 1-3 recycling cycles; only the last carries the
gradient (PhAI's recipe). `--p-denoise` starts that share of the steps from the true signs with up
to half of them flipped instead (measured: no better from random starts; off by default). The
loss is the E-weighted sign cross-entropy at the best of the eight origins, over every reflection
of the sphere (measured or not: phase extension is trained too).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

import aisolve.core  # noqa: F401  (cctbx first)
import torch
from aisolve.models.data.generate import split_of
from aisolve.models.data.molecules import embed, nci_smiles
from aisolve.models.data.phaser_samples import PhaserSample, PhaserSampler
from aisolve.models.phase_grid import ORIGIN_PARITIES, map_correlation, normalised_amplitudes
from aisolve.models.phase_net import PhaseNet, PhaseNetConfig, grid_hkl, origin_loss
from aisolve.models.training import RunConfig

MAX_HEAVY = 14  # Z = 4 at ~18 A^3 per atom in a cell of <= 1,000 A^3
SUCCESS_R = 0.95

PRESETS = {
    "cpu": dict(net=PhaseNetConfig(), batch=12, lr=1e-3, val_samples=96, val_cycles=6),
    "cpu-wide": dict(net=PhaseNetConfig(channels=24, conv_layers=4, head_hidden=32, steps=3), batch=12, lr=2e-3,
                     val_samples=96, val_cycles=6),
    "gpu": dict(net=PhaseNetConfig(channels=32, conv_layers=4, head_hidden=64, steps=4), batch=64, lr=1e-3,
                val_samples=256, val_cycles=8),
}


@dataclass(kw_only=True)
class PhaserTrainConfig(RunConfig):
    minutes: float = 90.0
    n_smiles: int = 5000
    split_seed: int = 0
    p_denoise: float = 0.0  # share of steps that start from partly right signs (the rest: random)
    max_cycles: int = 3  # recycling cycles per step, the last one with gradient


def fragments(split: str, n_smiles: int = 5000, split_seed: int = 0) -> list[tuple[list[str], np.ndarray]]:
    """(elements, Cartesian xyz) of the NCI molecules whose scaffold falls in `split`."""
    out = []
    for i, smi in enumerate(nci_smiles()[:n_smiles]):
        mol = embed(smi, seed=i, max_heavy=MAX_HEAVY)
        if mol is not None and split_of("smi:" + mol.scaffold, split_seed) == split:
            out.append((mol.elements, mol.xyz))
    return out


def tensors(samples: list[PhaserSample], device="cpu") -> dict:
    """Network inputs and training targets of a batch of samples."""
    e = np.stack([normalised_amplitudes(s.amplitudes, s.stol_sq, s.mask) for s in samples])
    present = np.stack([s.true_amplitudes > 0 for s in samples]).astype(np.float32)
    weight = np.stack([normalised_amplitudes(s.true_amplitudes, s.stol_sq, s.true_amplitudes > 0) for s in samples])
    inv_d = np.stack([2 * np.sqrt(s.stol_sq) for s in samples])

    def t(x, dtype=torch.float32):
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
    return {"e": t(e), "mask": t(np.stack([s.mask for s in samples])), "inv_d": t(inv_d), "present": t(present),
            "weight": t(weight), "pi": t(np.stack([s.phase_is_pi for s in samples]), torch.bool)}


def random_signs(batch: dict, generator) -> torch.Tensor:
    r = torch.randint(0, 2, batch["e"].shape, generator=generator, device="cpu").to(batch["e"].device)
    return (2.0 * r - 1.0) * batch["mask"]


def noisy_true_signs(batch: dict, rng, generator) -> torch.Tensor:
    """Denoising starts: the true signs at a random one of the eight origins with a share p of them
    flipped, p uniform in 0-0.5 per sample (0.5 = a random start). Iterating a network trained to
    improve partly right phases is what lets it climb from a random start at inference."""

    hkl = grid_hkl(batch["e"].device)
    truth = torch.where(batch["pi"], -1.0, 1.0)
    out = []
    for i in range(truth.shape[0]):
        parity = torch.as_tensor(ORIGIN_PARITIES[rng.randrange(8)], device=hkl.device)
        shifted = truth[i] * torch.where((hkl * parity).sum(-1) % 2 == 1, -1.0, 1.0)
        flip = torch.rand(shifted.shape, generator=generator).to(shifted.device) < rng.uniform(0.0, 0.5)
        out.append(torch.where(flip, -shifted, shifted))
    return torch.stack(out) * batch["mask"]


def run_cycles(model, batch: dict, signs, cycles: int):
    """Recycle: each cycle's expected signs are the next one's input. Returns the last logits."""
    logits = None
    for _ in range(cycles):
        logits = model(batch["e"], batch["mask"], batch["inv_d"], signs, batch["present"])
        signs = torch.tanh(logits / 2)
    return logits


def evaluate(model, samples: list[PhaserSample], cycles: int, device="cpu") -> dict:
    model.eval()
    gen = torch.Generator().manual_seed(0)
    rs = []
    with torch.no_grad():
        for k in range(0, len(samples), 32):
            chunk = samples[k:k + 32]
            batch = tensors(chunk, device)
            logits = run_cycles(model, batch, random_signs(batch, gen), cycles).cpu().numpy()
            rs += [map_correlation(np.where(lg >= 0, 1.0, -1.0), s.phase_is_pi, s.amplitudes, s.mask)
                   for lg, s in zip(logits, chunk)]
    rs = np.array(rs)
    return {"success": float((rs >= SUCCESS_R).mean()), "mean_r": float(rs.mean())}


def train(cfg: PhaserTrainConfig, log=print) -> dict:

    from aisolve.models.training import fit
    preset = PRESETS[cfg.preset]
    t0 = time.monotonic()
    train_frags = fragments("train", cfg.n_smiles, cfg.split_seed)
    val_frags = fragments("val", cfg.n_smiles, cfg.split_seed)
    log(f"{len(train_frags)} train and {len(val_frags)} val molecules in {time.monotonic() - t0:.0f} s")
    # the val set is fixed (its own seed) and spans the resolutions PhAI reports, 1.0-2.0 A
    val_sampler = PhaserSampler(val_frags, seed=12345)
    val_set = [val_sampler.sample(d_min=float(d)) for d in np.linspace(1.0, 2.0, preset["val_samples"])]
    torch.manual_seed(cfg.seed)
    model = PhaseNet(preset["net"]).to(cfg.device)

    def make_step(rng, nprng):
        sampler = PhaserSampler(train_frags, seed=int(nprng.integers(1 << 31)))
        gen = torch.Generator().manual_seed(int(nprng.integers(1 << 31)))

        def step():
            batch = tensors([sampler.sample() for _ in range(preset["batch"])], cfg.device)
            signs = noisy_true_signs(batch, rng, gen) if rng.random() < cfg.p_denoise else random_signs(batch, gen)
            cycles = rng.randint(1, cfg.max_cycles)
            if cycles > 1:
                with torch.no_grad():
                    signs = torch.tanh(run_cycles(model, batch, signs, cycles - 1) / 2)
            logits = model(batch["e"], batch["mask"], batch["inv_d"], signs, batch["present"])
            return origin_loss(logits, batch["pi"], batch["weight"]).mean()
        return step

    return fit(model, cfg, preset["lr"], make_step,
               lambda: evaluate(model, val_set, preset["val_cycles"], cfg.device),
               {"net": preset["net"].as_dict(), "train_config": asdict(cfg)}, score_key="success", log=log)


def main(argv=None) -> int:
    from aisolve.models.training import common_options, print_outcome, training_parser
    p = training_parser(__doc__.splitlines()[0], PRESETS, 90.0)
    p.add_argument("--n-smiles", type=int, default=5000)
    p.add_argument("--p-denoise", type=float, default=0.0)
    p.add_argument("--max-cycles", type=int, default=3)
    a = p.parse_args(argv)
    print_outcome(train(PhaserTrainConfig(n_smiles=a.n_smiles, p_denoise=a.p_denoise, max_cycles=a.max_cycles,
                                          **common_options(a))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
