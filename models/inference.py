"""Running a shipped network: ONNX Runtime first (CUDA provider when a GPU and the GPU build are
present, CPU otherwise), the torch weights when onnxruntime is missing, and torch for the one input
the exported graph cannot take (a graph without any edge).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def configured_threads() -> int | None:
    """The thread count OMP_NUM_THREADS asks for (torch and BLAS read it themselves, ONNX Runtime
    does not; aisolve.server.threads sets it for processes sharing the cores); None when unset
    or not a positive whole number."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def onnx_session(path: Path, device: str):
    """An ONNX Runtime session: the CUDA provider first when asked for (device != 'cpu') and present."""
    import onnxruntime as ort
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: a handled fallback (see logits) must not print errors
    threads = configured_threads()
    if threads is not None:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


class _OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, device: str):
        self.session = onnx_session(path, device)
        self.providers = self.session.get_providers()

    def __call__(self, pos, token, height, composition, batch) -> np.ndarray:
        return self.session.run(None, {"pos": pos, "token": token, "height": height,
                                       "composition": composition, "batch": batch})[0]


class _TorchBackend:
    name = "torch"

    def __init__(self, path: Path, device: str):
        import torch

        from aisolve.models.element_net import ElementNet, NetConfig
        saved = torch.load(path, map_location="cpu", weights_only=False)
        self.device = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        self.model = ElementNet(NetConfig(**saved["net"])).to(self.device)
        self.model.load_state_dict(saved["model"])
        self.model.eval()
        self.providers = [self.device]

    def __call__(self, pos, token, height, composition, batch) -> np.ndarray:
        import torch
        t = lambda a: torch.as_tensor(a, device=self.device)  # noqa: E731
        with torch.no_grad():
            return self.model(t(pos), t(token), t(height), t(composition), t(batch)).cpu().numpy()


class NetworkRunner:
    """Logits of a shipped network (ElementNet body) for one graph's nodes."""

    def __init__(self, weights_dir: Path, onnx_file: str, torch_file: str, backend: str = "auto",
                 device: str = "auto"):
        self.weights_dir = weights_dir
        self.torch_path = weights_dir / torch_file
        self._fallback = None
        onnx_path = weights_dir / onnx_file
        if backend in ("auto", "onnx") and onnx_path.exists():
            try:
                self.backend = _OnnxBackend(onnx_path, device)
            except ImportError:
                if backend == "onnx":
                    raise
                self.backend = _TorchBackend(self.torch_path, device)
        elif backend in ("auto", "torch") and self.torch_path.exists():
            self.backend = _TorchBackend(self.torch_path, device)
        else:
            raise FileNotFoundError(f"no {onnx_file} or {torch_file} in {weights_dir}")

    def logits(self, gi, tokens: np.ndarray, composition: np.ndarray) -> np.ndarray:
        """(n_asu, classes) logits; `tokens` per asymmetric-unit node, `gi` from graph_inputs.build_input."""
        n = len(gi.pos)
        args = (gi.pos.astype(np.float32), tokens[gi.source].astype(np.int64), gi.height.astype(np.float32),
                composition.astype(np.float32)[None, :], np.zeros(n, dtype=np.int64))
        try:
            return self.backend(*args)[: gi.n_asu]
        except Exception:  # noqa: BLE001 - onnxruntime's own error types
            # The exported graph cannot take a graph without any edge (all nodes > 3.2 A apart):
            # torch can. Anything else is re-raised by the torch run itself.
            if self.backend.name != "onnxruntime" or not self.torch_path.exists():
                raise
            if self._fallback is None:
                self._fallback = _TorchBackend(self.torch_path, "cpu")
            return self._fallback(*args)[: gi.n_asu]
