"""The neural phaser's network (PhAI's task, built to train on a CPU): signs of centric P2_1/c
structure factors from their amplitudes, refined over recycling cycles.

PhAI mixes the 1,205 reflections of its hkl grid with convolutions and a large token mixer. Here
the global mixing is the Fourier transform itself (an FNet-style mixer that knows crystallography):
one cycle is a few unrolled steps of

    coefficients (E x current sign; the network's own estimate where unmeasured)
      -> density on a 24^3 grid of the P2_1/c cell (inverse FFT of the P1-expanded coefficients)
      -> a small 3D convolutional network with periodic padding (what atoms look like)
      -> FFT, averaged over the four point-group equivalents (so the result keeps the symmetry)
      -> a per-reflection head: new sign logit from the transform, E, 1/d and the old sign.

The reflection grid's numpy side (sign relations, grid maps, E-values) is models/phase_grid.py.
The density steps commute with P2_1/c's eight origin shifts (half-cell shifts are 12 voxels), but
the head is free to prefer an origin, as direct methods fix one by choosing three signs: a head
made odd in the sign (so that the whole network commutes with the shifts) did not learn at all in
the same training time (docs/BENCHMARKS.md). The loss takes the best of the eight origins. The network has a
few thousand weights: the FFT does the work PhAI's 42 M parameters learn.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from aisolve.models.data.phaser_samples import GRID_SHAPE
from aisolve.models.phase_grid import FFT_N, GRID_HKL, ORIGIN_PARITIES, grid_maps


@dataclass
class PhaseNetConfig:
    channels: int = 12  # real-space feature maps
    conv_layers: int = 3
    head_hidden: int = 32
    steps: int = 3  # unrolled density-modification steps per cycle

    def as_dict(self) -> dict:
        return asdict(self)


class PhaseNet(nn.Module):
    def __init__(self, cfg: PhaseNetConfig = PhaseNetConfig()):
        super().__init__()
        self.cfg = cfg
        for name, value in zip(("expand_index", "expand_sign", "gather_index", "gather_sign"), grid_maps()):
            self.register_buffer(name, torch.from_numpy(value), persistent=False)
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv3d(2, c, 3, padding=1, padding_mode="circular"), nn.GELU()]
        for _ in range(cfg.conv_layers - 2):
            layers += [nn.Conv3d(c, c, 3, padding=1, padding_mode="circular"), nn.GELU()]
        layers += [nn.Conv3d(c, 1, 1)]
        self.real_space = nn.Sequential(*layers)
        # inputs per reflection: transform, E, measured, 1/d, current sign, step fraction
        self.head = nn.Sequential(nn.Linear(6, cfg.head_hidden), nn.GELU(), nn.Linear(cfg.head_hidden, cfg.head_hidden),
                                  nn.GELU(), nn.Linear(cfg.head_hidden, 1))
        self.unmeasured_gain = nn.Parameter(torch.tensor(0.5))

    def density(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(B, 21, 11, 11) real coefficients -> (B, N, N, N) density, unit RMS."""
        b = coefficients.shape[0]
        flat = torch.cat([coefficients.reshape(b, -1), coefficients.new_zeros(b, 1)], dim=1)
        full = (flat[:, self.expand_index] * self.expand_sign).reshape(b, FFT_N, FFT_N, FFT_N)
        rho = torch.fft.ifftn(full.to(torch.complex64), dim=(1, 2, 3)).real
        return rho / rho.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-12).sqrt()

    def transform(self, rho: torch.Tensor) -> torch.Tensor:
        """(B, N, N, N) density -> (B, 21, 11, 11) symmetry-averaged real structure factors."""
        b = rho.shape[0]
        g = torch.fft.fftn(rho.to(torch.complex64), dim=(1, 2, 3)).real.reshape(b, -1)
        return (g[:, self.gather_index] * self.gather_sign).sum(dim=-1).reshape(b, *GRID_SHAPE)

    def forward(self, e: torch.Tensor, mask: torch.Tensor, inv_d: torch.Tensor, signs: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        """One cycle. e, inv_d: (B, 21, 11, 11) E-values (0 where missing) and 1/d (0 outside the
        sphere); mask, present: 1.0 where measured / where a reflection exists and is not absent;
        signs: current soft signs in [-1, 1] (0 = unknown). Returns sign logits (> 0: phase 0)."""
        estimate = torch.zeros_like(e)
        logits = torch.zeros_like(e)
        for step in range(self.cfg.steps):
            coeff = (mask * e * signs + (1 - mask) * present * self.unmeasured_gain * estimate)
            rho = self.density(coeff)
            rho = self.real_space(torch.stack([rho, rho.abs()], dim=1)).squeeze(1)
            g = self.transform(rho)
            g = g / (g.pow(2) * present).sum(dim=(1, 2, 3), keepdim=True).div(
                present.sum(dim=(1, 2, 3), keepdim=True)).add(1e-12).sqrt()
            frac = torch.full_like(e, (step + 1) / self.cfg.steps)
            feats = torch.stack([g, e, mask, inv_d, signs, frac], dim=-1)
            logits = self.head(feats).squeeze(-1) * present
            signs = torch.tanh(logits / 2)  # the expected sign
            estimate = g
        return logits


def origin_loss(logits: torch.Tensor, phase_is_pi: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted binary cross-entropy of the signs at the best of P2_1/c's eight origins, per sample.

    An origin shift by t in {0, 1/2}^3 multiplies F(h) by (-1)^(2 h.t): the target signs flip on
    one parity class of the indices."""
    hkl = grid_hkl(logits.device)
    target = 1.0 - phase_is_pi.float()  # 1 where the phase is 0
    losses = []
    for parity in ORIGIN_PARITIES:
        flip = ((hkl * torch.as_tensor(parity, device=logits.device)).sum(-1) % 2 == 1)
        t = torch.where(flip, 1.0 - target, target)
        bce = nn.functional.binary_cross_entropy_with_logits(logits, t, reduction="none")
        losses.append((bce * weight).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3)).clamp_min(1e-9))
    return torch.stack(losses, dim=1).min(dim=1).values


def grid_hkl(device) -> torch.Tensor:
    return torch.as_tensor(GRID_HKL, device=device)
