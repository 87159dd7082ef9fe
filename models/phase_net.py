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

The density steps commute with P2_1/c's eight origin shifts (half-cell shifts are 12 voxels), but
the head is free to prefer an origin, as direct methods fix one by choosing three signs: a head
made odd in the sign (so that the whole network commutes with the shifts) did not learn at all in
the same training time (docs/BENCHMARKS.md). The loss takes the best of the eight origins. The network has a
few thousand weights: the FFT does the work PhAI's 42 M parameters learn.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from aisolve.models.data.phaser_samples import GRID_SHAPE, H_MAX, grid_indices

FFT_N = 24  # density grid per axis: > 2 H_MAX, and even so that half-cell origin shifts are exact
ORIGIN_PARITIES = np.array([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])


@dataclass
class PhaseNetConfig:
    channels: int = 12  # real-space feature maps
    conv_layers: int = 3
    head_hidden: int = 32
    steps: int = 3  # unrolled density-modification steps per cycle

    def as_dict(self) -> dict:
        return asdict(self)


def equivalents(h: int, k: int, l: int) -> list[tuple[tuple[int, int, int], int]]:
    """The point-group equivalents of (h, k, l) in P2_1/c with the sign F(equivalent) / F(h, k, l).
    F is real (inversion at the origin); the 2_1 screw and the c glide add (-1)^(k+l)."""
    s = -1 if (k + l) % 2 else 1
    return [((h, k, l), 1), ((-h, -k, -l), 1), ((-h, k, -l), s), ((h, -k, l), s)]


def _grid_maps():
    """Index maps between the (21, 11, 11) reflection grid and the FFT_N^3 P1 grid.

    expand_index/expand_sign: for each P1 grid point, the flat reflection-grid index holding its
    value (or a zero slot past the end) and the sign to apply. gather_index/gather_sign: for each
    reflection-grid point, its four equivalents on the P1 grid (an unused slot maps to point 0
    with sign 0)."""
    n_grid = int(np.prod(GRID_SHAPE))
    flat = np.ravel_multi_index
    in_sphere = {tuple(map(int, h)) for h in grid_indices()}
    expand_index = np.full(FFT_N ** 3, n_grid, dtype=np.int64)
    expand_sign = np.zeros(FFT_N ** 3, dtype=np.float32)
    gather_index = np.zeros((n_grid, 4), dtype=np.int64)
    gather_sign = np.zeros((n_grid, 4), dtype=np.float32)
    for h, k, l in in_sphere:
        g = flat((h + H_MAX, k, l), GRID_SHAPE)
        for j, ((eh, ek, el), sign) in enumerate(equivalents(h, k, l)):
            p = flat((eh % FFT_N, ek % FFT_N, el % FFT_N), (FFT_N,) * 3)
            gather_index[g, j], gather_sign[g, j] = p, sign / 4.0
            expand_index[p], expand_sign[p] = g, sign
    return expand_index, expand_sign, gather_index, gather_sign


class PhaseNet(nn.Module):
    def __init__(self, cfg: PhaseNetConfig = PhaseNetConfig()):
        super().__init__()
        self.cfg = cfg
        for name, value in zip(("expand_index", "expand_sign", "gather_index", "gather_sign"), _grid_maps()):
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


class DensityMaps:
    """The network's coefficient -> density step in numpy, for figures of merit at inference."""

    def __init__(self):
        self.expand_index, self.expand_sign, _, _ = _grid_maps()

    def __call__(self, coefficients: np.ndarray) -> np.ndarray:
        b = coefficients.shape[0]
        flat = np.concatenate([coefficients.reshape(b, -1), np.zeros((b, 1), coefficients.dtype)], axis=1)
        full = (flat[:, self.expand_index] * self.expand_sign).reshape(b, FFT_N, FFT_N, FFT_N)
        return np.fft.ifftn(full, axes=(1, 2, 3)).real


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
    h = torch.arange(-H_MAX, H_MAX + 1, device=device)
    k = torch.arange(0, H_MAX + 1, device=device)
    return torch.stack(torch.meshgrid(h, k, k, indexing="ij"), dim=-1)


def map_correlation(signs: np.ndarray, phase_is_pi: np.ndarray, amplitudes: np.ndarray, mask: np.ndarray) -> float:
    """PhAI's success measure: the correlation of the maps with the observed amplitudes and the
    predicted or the true signs, at the best of the eight origins (1.0 = identical maps)."""
    hkl = np.stack(np.meshgrid(np.arange(-H_MAX, H_MAX + 1), np.arange(H_MAX + 1), np.arange(H_MAX + 1),
                               indexing="ij"), axis=-1)
    w = amplitudes ** 2 * mask
    true = np.where(phase_is_pi, -1.0, 1.0)
    best = -1.0
    for parity in ORIGIN_PARITIES:
        flip = np.where((hkl @ parity) % 2 == 1, -1.0, 1.0)
        best = max(best, float((w * signs * true * flip).sum() / max(w.sum(), 1e-12)))
    return best


def normalised_amplitudes(amplitudes: np.ndarray, stol_sq: np.ndarray, mask: np.ndarray, n_bins: int = 8
                          ) -> np.ndarray:
    """E-values on the grid: |F| over the RMS |F| of its resolution shell (equal-count shells of the
    measured reflections), with P2_1/c's epsilon of 2 for h0l and 0k0; 0 where not measured."""
    e = np.zeros_like(amplitudes, dtype=np.float32)
    idx = np.nonzero(mask)
    if len(idx[0]) == 0:
        return e
    h, k, l = idx[0] - H_MAX, idx[1], idx[2]
    eps = np.where((k == 0) | ((h == 0) & (l == 0)), 2.0, 1.0)
    f2 = amplitudes[idx].astype(np.float64) ** 2 / eps
    order = np.argsort(stol_sq[idx], kind="stable")
    out = np.empty_like(f2)
    for chunk in np.array_split(order, min(n_bins, len(order))):
        out[chunk] = np.sqrt(f2[chunk] / max(f2[chunk].mean(), 1e-12))
    e[idx] = out
    return e
