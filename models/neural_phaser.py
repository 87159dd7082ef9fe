"""The neural phaser as a pipeline stage: P2_1/c amplitudes -> phases (core/stages.Phaser).

The data are taken to the standard setting P 1 21/c 1 (P2_1/n, P2_1/a and other cells of space
group 14 are transformed with cctbx's change of basis and the phases taken back), put on the
network's hkl grid (|h|, |k|, |l| <= 10 inside the sphere of radius 10), normalised to E-values
and phased from several random starts, each recycled through the network. The trial chosen is
the one whose signs the network is surest of (a truth-free figure; see sign_confidence); every
distinct trial is kept as a candidate so that the pipeline can choose by quick refinement.

Reflections beyond the grid get no phase here (the pipeline's model refinement phases them);
reflections inside the sphere that were not measured get the network's extended phases and
amplitude estimates (`PhasingResult.extension`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from cctbx import crystal, miller
from cctbx.array_family import flex

from aisolve.core.data_prep import PreparedData
from aisolve.core.stages import PhaserNotApplicable, PhasingResult, PhasingTrial, Progress, no_progress
from aisolve.models.data.phaser_samples import GRID_SHAPE, H_MAX, grid_indices, systematically_absent
from aisolve.models.phase_grid import GRID_HKL, ORIGIN_PARITIES, DensityMaps, normalised_amplitudes

WEIGHTS_DIR = Path(__file__).parent / "weights"
ONNX_FILE, TORCH_FILE = "phase_net.onnx", "phase_net.pt"
SPACE_GROUP_NUMBER = 14
REFERENCE_SYMBOL = "P 1 21/c 1"
# trained on cells with edges <= 10 A; a little beyond, the sphere still holds most of the strong data
MAX_CELL_EDGE = 12.0


def weights_present(weights_dir: Path = WEIGHTS_DIR) -> bool:
    return (weights_dir / ONNX_FILE).exists() or (weights_dir / TORCH_FILE).exists()


def check_applicable(symmetry: crystal.symmetry) -> None:
    info = symmetry.space_group_info()
    if info.type().number() != SPACE_GROUP_NUMBER:
        raise PhaserNotApplicable(f"the neural phaser handles P2_1/c (space group 14, any setting) only; "
                                  f"these data are in {info} (number {info.type().number()})")
    cell = symmetry.change_basis(info.change_of_basis_op_to_reference_setting()).unit_cell().parameters()
    if max(cell[:3]) > MAX_CELL_EDGE:
        raise PhaserNotApplicable(f"the neural phaser was trained on cells with edges <= 10 A (accepted up to "
                                  f"{MAX_CELL_EDGE:.0f} A); this cell has an edge of {max(cell[:3]):.1f} A")


class PhaseNetRunner:
    """The network's logits for a batch of trials: ONNX Runtime when the export and onnxruntime are
    present (CUDA provider on a GPU), torch otherwise; CPU always works."""

    INPUTS = ("e", "mask", "inv_d", "signs", "present")

    def __init__(self, weights_dir: Path = WEIGHTS_DIR, backend: str = "auto", device: str = "auto"):
        onnx_path = weights_dir / ONNX_FILE
        self.session = self.model = None
        if backend in ("auto", "onnx") and onnx_path.exists():
            try:
                from aisolve.models.inference import onnx_session
                self.session = onnx_session(onnx_path, device)
                self.backend = "onnxruntime"
                return
            except ImportError:
                if backend == "onnx":
                    raise
        import torch

        from aisolve.models.phase_net import PhaseNet, PhaseNetConfig
        if not (weights_dir / TORCH_FILE).exists():
            raise FileNotFoundError(f"no {ONNX_FILE} or {TORCH_FILE} in {weights_dir}")
        saved = torch.load(weights_dir / TORCH_FILE, map_location="cpu", weights_only=False)
        self.device = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        self.model = PhaseNet(PhaseNetConfig(**saved["net"]))
        self.model.load_state_dict(saved["model"])
        self.model.to(self.device).eval()
        self.backend = "torch"

    def __call__(self, e, mask, inv_d, signs, present) -> np.ndarray:
        arrays = [np.ascontiguousarray(x, dtype=np.float32) for x in (e, mask, inv_d, signs, present)]
        if self.session is not None:
            return self.session.run(None, dict(zip(self.INPUTS, arrays)))[0]
        import torch
        with torch.no_grad():
            return self.model(*(torch.as_tensor(x, device=self.device) for x in arrays)).cpu().numpy()


class GridData:
    """Amplitudes of standard-setting P2_1/c data on the network's grid, with the way back."""

    def __init__(self, f_obs: miller.array):
        self.f_obs = f_obs
        self.cb_op = f_obs.space_group_info().change_of_basis_op_to_reference_setting()
        ref = f_obs.change_basis(self.cb_op).map_to_asu()
        if str(ref.space_group_info()) != str(crystal.symmetry(space_group_symbol=REFERENCE_SYMBOL)
                                              .space_group_info()):
            raise PhaserNotApplicable(f"could not take {f_obs.space_group_info()} to {REFERENCE_SYMBOL}")
        self.reference = ref
        p1 = ref.expand_to_p1().generate_bijvoet_mates()
        self.amplitudes = np.zeros(GRID_SHAPE, dtype=np.float32)
        self.mask = np.zeros(GRID_SHAPE, dtype=bool)
        for (h, k, l), f in zip(p1.indices(), p1.data()):
            if k >= 0 and l >= 0 and abs(h) <= H_MAX and h * h + k * k + l * l <= H_MAX * H_MAX:
                self.amplitudes[h + H_MAX, k, l] = f
                self.mask[h + H_MAX, k, l] = True
        self.amplitudes /= max(float(self.amplitudes.max()), 1e-12)
        # every reflection of the sphere that exists (not systematically absent) in P2_1/c
        hkl = grid_indices()
        keep = ~systematically_absent(hkl)
        self.hkl = hkl[keep]
        ix = (self.hkl[:, 0] + H_MAX, self.hkl[:, 1], self.hkl[:, 2])
        self.present = np.zeros(GRID_SHAPE, dtype=bool)
        self.present[ix] = True
        self.stol_sq = np.zeros(GRID_SHAPE, dtype=np.float32)
        indices = flex.miller_index([tuple(map(int, h)) for h in self.hkl])
        self.stol_sq[ix] = np.asarray(ref.unit_cell().stol_sq(indices))
        self.e = normalised_amplitudes(self.amplitudes, self.stol_sq, self.mask)

    def inputs(self, n_trials: int) -> dict:
        """The network's inputs (but the signs), one copy per trial."""
        def rep(x):
            return np.repeat(np.asarray(x, dtype=np.float32)[None], n_trials, axis=0)
        return {"e": rep(self.e), "mask": rep(self.mask), "inv_d": rep(2 * np.sqrt(self.stol_sq)),
                "present": rep(self.present)}

    def phased(self, values: np.ndarray, extended: bool = False) -> miller.array:
        """The grid's signed values as phased amplitudes in the data's own setting and asymmetric
        unit: the observed |F| with the signs of `values` for the measured reflections, or with
        `extended` the unmeasured reflections of the sphere with `values` themselves."""
        sel = self.present & (~self.mask if extended else self.mask)
        idx = np.nonzero(sel)
        indices = flex.miller_index([(int(h) - H_MAX, int(k), int(l)) for h, k, l in zip(*idx)])
        data = flex.complex_double(flex.double(values[idx].astype(np.float64).tolist()), flex.double(len(indices)))
        # cctbx applies the symmetry phase shifts when it maps the grid's indices to its asymmetric unit
        arr = miller.array(miller.set(self.reference.crystal_symmetry(), indices, anomalous_flag=False),
                           data).map_to_asu()
        first = {}
        for i, h in enumerate(arr.indices()):
            first.setdefault(tuple(h), i)  # l = 0 and k = 0 planes hold each reflection twice
        arr = arr.select(flex.size_t(sorted(first.values())))
        if not extended:
            arr, obs = arr.common_sets(self.reference)
            signs = flex.double([1.0 if z.real >= 0 else -1.0 for z in arr.data()])
            arr = arr.customized_copy(data=flex.complex_double(signs * obs.data(), flex.double(arr.size())))
        back = arr.change_basis(self.cb_op.inverse()).map_to_asu()
        return back.customized_copy(crystal_symmetry=self.f_obs.crystal_symmetry())


def sphere_set(symmetry: crystal.symmetry, d_min: float) -> miller.set:
    """The reflections to d_min that lie inside the network's sphere (counted in P 1 21/c 1)."""
    ms = miller.build_set(symmetry, anomalous_flag=False, d_min=d_min).remove_systematic_absences()
    ref = ms.change_basis(symmetry.space_group_info().change_of_basis_op_to_reference_setting()).indices()
    return ms.select(flex.bool([h * h + k * k + l * l <= H_MAX ** 2 for h, k, l in ref]))


def origin_correlation(phased: miller.array, truth: miller.array) -> float:
    """PhAI's success measure on phased amplitudes: the |F|^2-weighted mean cos(phase difference)
    with the true structure factors at the best of the eight P2_1/c origins."""
    a, b = phased.common_sets(truth)
    w = np.asarray(flex.pow2(flex.abs(b.data())))
    d = np.asarray(flex.arg(a.data())) - np.asarray(flex.arg(b.data()))
    hkl = np.array(a.indices(), dtype=float)
    return max(float((w * np.cos(d - np.pi * hkl @ parity)).sum() / max(w.sum(), 1e-12)) for parity in ORIGIN_PARITIES)


def map_skewness(density) -> np.ndarray:
    """Skewness of each density map of a batch (true structures: a few high, sharp peaks)."""
    flat = density.reshape(density.shape[0], -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    return (centred ** 3).mean(axis=1) / np.maximum((centred ** 2).mean(axis=1), 1e-30) ** 1.5


def sign_confidence(logits: np.ndarray, e: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The network's own certainty of each trial's signs: the E-weighted mean |expected sign| over
    the measured reflections. Trials that reached a right solution settle with confident signs;
    on the validation split it picks the right trial at least as often as the map skewness does
    (docs/BENCHMARKS.md)."""
    w = e * mask
    return (np.abs(np.tanh(logits / 2)) * w).sum(axis=(1, 2, 3)) / np.maximum(w.sum(axis=(1, 2, 3)), 1e-12)


class NeuralPhaser:
    name = "neural"

    def __init__(self, n_trials: int = 32, cycles: int = 12, seed: int = 0, weights_dir: Path = WEIGHTS_DIR,
                 device: str = "auto", backend: str = "auto", falls_back_to_flipping: bool = False):
        self.n_trials, self.cycles, self.seed = n_trials, cycles, seed
        # `--phaser auto`: the pipeline runs charge flipping when this phaser refuses or does poorly
        self.falls_back_to_flipping = falls_back_to_flipping
        self.runner = PhaseNetRunner(weights_dir, backend, device)
        self.density = DensityMaps()

    def trials(self, grid: GridData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(signs, logits, confidence, skewness) of every trial from its own random start, on the grid."""
        batch = grid.inputs(self.n_trials)
        rng = np.random.default_rng(self.seed)
        signs = np.where(rng.random(batch["e"].shape) < 0.5, -1.0, 1.0) * batch["mask"]
        for _ in range(self.cycles):
            logits = self.runner(batch["e"], batch["mask"], batch["inv_d"], signs, batch["present"])
            signs = np.tanh(logits / 2)
        hard = np.where(logits >= 0, 1.0, -1.0) * batch["present"]
        return (hard, logits, sign_confidence(logits, batch["e"], batch["mask"]),
                map_skewness(self.density(batch["e"] * batch["mask"] * hard)))

    def phase(self, data: PreparedData, symmetry: crystal.symmetry, time_budget: float = 60.0,
              progress: Progress = no_progress) -> PhasingResult:
        start = time.monotonic()
        check_applicable(symmetry)
        grid = GridData(data.f_obs)
        progress(0.1, f"neural phasing: {int(grid.mask.sum())} reflections on the grid, {self.n_trials} trials")
        signs, logits, confidence, skew = self.trials(grid)
        order = np.argsort(-confidence)
        candidates, trials, seen = [], [], set()
        for i in order:
            key = _origin_free_key(signs[i], grid.mask)
            trials.append(PhasingTrial(seed=self.seed * 1000 + int(i), figure_of_merit=float(confidence[i]),
                                       iterations=self.cycles))
            if key in seen:
                continue
            seen.add(key)
            candidates.append((float(confidence[i]), grid.phased(signs[i])))
        best = order[0]
        # the extension: |G| of the network's last transform is not kept, so the amplitude estimate
        # is the confidence-weighted sign of the logit in E units
        extension = grid.phased(np.tanh(logits[best] / 2), extended=True)
        n_beyond = data.f_obs.size() - candidates[0][1].size()
        notes = [f"neural phaser: {self.n_trials} trials x {self.cycles} cycles on {int(grid.mask.sum())} grid "
                 f"reflections in {time.monotonic() - start:.1f} s; best trial: sign confidence "
                 f"{confidence[best]:.3f}, E-map skewness {skew[best]:.2f}; "
                 f"{extension.size()} unmeasured reflections of the sphere phased (extension)"]
        if n_beyond > 0:
            notes.append(f"{n_beyond} reflections beyond the network's hkl sphere are left to the model refinement")
        progress(1.0, f"neural phasing: best sign confidence {confidence[best]:.3f}")
        return PhasingResult(route=self.name, f_calc=candidates[0][1], trials=trials,
                             figure_of_merit=float(confidence[best]), notes=notes, candidates=candidates,
                             extension=extension)


def _origin_free_key(signs: np.ndarray, mask: np.ndarray) -> bytes:
    """The same solution at another of the eight origins gets the same key."""
    keys = []
    for parity in ORIGIN_PARITIES:
        flip = np.where((GRID_HKL @ parity) % 2 == 1, -1, 1)
        keys.append((np.sign(signs * flip)[mask] > 0).tobytes())
    return min(keys)
