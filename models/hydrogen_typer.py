"""The hydrogen network as a pipeline stage: refined non-H atoms -> H count per atom (0-4).

The network (ElementNet body, 5-class head; models/train_hydrogens.py) reads each atom's element,
its Ueq relative to the structure's and its surroundings up to 3.2 A, symmetry copies included
(hydrogen-bond partners). Where the data are at hand, the difference density at each count's
H sites is weighed in (core/h_evidence.py): the network is the prior, the map the evidence, so a
charged NH3+ or a shared O-H...O hydrogen the network doubts is settled by what was measured.
With cell contents the counts are decoded together: the most probable counts whose sum (site
multiplicities included) matches the formula's H per asymmetric unit, with a penalty instead of a
hard limit, since a model may lack a solvent or disordered part.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from aisolve.core.elements import ATOMIC_NUMBER
from aisolve.core.typing_baseline import asu_weights
from aisolve.models.element_decode import log_softmax
from aisolve.models.graph_inputs import build_input
from aisolve.models.h_data import relative_ueq
from aisolve.models.inference import NetworkRunner

WEIGHTS_DIR = Path(__file__).parent / "weights"
ONNX_FILE, TORCH_FILE = "hydrogen_net.onnx", "hydrogen_net.pt"
# `--hydrogens auto` picks the network where it beats the geometry rules on the real-data
# benchmark: with the difference density it does (98.8 vs 97.9 % of atoms, 22 vs 21 entries
# with every H count right, element network's elements; ahead or level with the baseline typer's;
# docs/BENCHMARKS.md, issue 6).
NETWORK_IS_DEFAULT = True
SLACK_PENALTY = 2.0  # log-probability units per H by which the sum may miss the formula's H count


def weights_present(weights_dir: Path = WEIGHTS_DIR) -> bool:
    return (weights_dir / ONNX_FILE).exists() or (weights_dir / TORCH_FILE).exists()


class HydrogenPredictor(NetworkRunner):
    def __init__(self, weights_dir: Path = WEIGHTS_DIR, backend: str = "auto", device: str = "auto"):
        super().__init__(weights_dir, ONNX_FILE, TORCH_FILE, backend, device)

    def log_probabilities(self, xyz_frac: np.ndarray, elements: list[str], ueq: list[float | None], cell,
                          hall: str, contents: dict[str, float] | None) -> np.ndarray:
        """(n, 5) log-probabilities of 0-4 riding H per atom."""
        from aisolve.models.element_net import composition_vector
        tokens = np.array([ATOMIC_NUMBER[e] for e in elements], dtype=np.int64)
        gi = build_input(np.asarray(xyz_frac, dtype=float), relative_ueq(ueq), tuple(cell), hall, tokens=tokens)
        logits = self.logits(gi, tokens, composition_vector(contents).numpy())
        return log_softmax(logits, np.ones(logits.shape[1], dtype=bool))


def decode_counts(log_probs: np.ndarray, weights: list[float], total_h: float | None) -> list[int]:
    """Per-atom H counts: argmax, or with `total_h` the best counts whose weighted sum meets it
    (MILP; missing or surplus H cost SLACK_PENALTY each)."""
    if total_h is None or len(log_probs) == 0:
        return [int(k) for k in log_probs.argmax(axis=1)]
    from scipy.optimize import Bounds, LinearConstraint, milp
    n, k = log_probs.shape
    # variables: x[i, c] (n*k binaries), then slack_plus, slack_minus
    cost = np.concatenate([-np.nan_to_num(log_probs, neginf=-50.0).ravel(), [SLACK_PENALTY, SLACK_PENALTY]])
    one_each = np.zeros((n, n * k + 2))
    for i in range(n):
        one_each[i, i * k:(i + 1) * k] = 1.0
    total = np.concatenate([np.outer(weights, np.arange(k)).ravel(), [1.0, -1.0]])[None, :]
    integrality = np.concatenate([np.ones(n * k), [0, 0]])
    upper = np.concatenate([np.ones(n * k), [np.inf, np.inf]])
    res = milp(cost, constraints=[LinearConstraint(one_each, 1, 1), LinearConstraint(total, total_h, total_h)],
               integrality=integrality, bounds=Bounds(np.zeros(n * k + 2), upper))
    if res.x is None:
        return [int(c) for c in log_probs.argmax(axis=1)]
    return [int(np.argmax(res.x[i * k:(i + 1) * k])) for i in range(n)]


class NetworkHydrogens:
    """HydrogenCounter backed by the hydrogen network (see core/stages.py)."""

    name = "network"

    def __init__(self, predictor: HydrogenPredictor | None = None):
        self.predictor = predictor or HydrogenPredictor()

    def counts(self, xs, contents: dict[str, float] | None, density=None, temperature_c: float | None = None
               ) -> list[int]:
        return decode_with_formula(self.log_probabilities(xs, contents, density, temperature_c),
                                   xs.crystal_symmetry(), [sc.site for sc in xs.scatterers()], contents)

    def log_probabilities(self, xs, contents: dict[str, float] | None, density=None,
                          temperature_c: float | None = None) -> np.ndarray:
        """(n, 5) log-probabilities of 0-4 H: the network's, weighed with the difference density
        at the candidate H sites when `density` is given (core/h_evidence.py)."""
        uc = xs.unit_cell()
        log_probs = self.predictor.log_probabilities(
            np.array([sc.site for sc in xs.scatterers()]), [sc.scattering_type for sc in xs.scatterers()],
            [sc.u_iso_or_equiv(uc) for sc in xs.scatterers()], uc.parameters(),
            xs.space_group().type().hall_symbol(), contents)
        if density is None:
            return log_probs
        from aisolve.core.h_evidence import count_log_evidence
        from aisolve.core.hydrogens import candidate_groups
        candidates = candidate_groups(xs, temperature_c, density, max_h=log_probs.shape[1] - 1)
        evidence, _ = count_log_evidence(candidates, density, log_probs)
        return log_softmax(log_probs + evidence, np.ones(log_probs.shape[1], dtype=bool))


def decode_with_formula(log_probs: np.ndarray, symmetry, sites, contents: dict[str, float] | None) -> list[int]:
    """decode_counts with the formula's H per asymmetric unit (argmax without one) and site weights."""
    total = None
    if contents and contents.get("H", 0) > 0:
        total = contents["H"] / symmetry.space_group().order_z()
    return decode_counts(log_probs, asu_weights(symmetry, sites), total)

