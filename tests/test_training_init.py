"""A run started with --init begins from those weights; a run with a checkpoint resumes from it
instead (no training: zero steps)."""
import aisolve.core  # noqa: F401  (cctbx first)
import torch

from aisolve.models.training import RunConfig, fit


def _fit(model, out, init=None):
    cfg = RunConfig(out=str(out), max_steps=0, init=init)
    return fit(model, cfg, 1e-3, lambda rng, nprng: None, lambda: {"atom_accuracy": 0.0}, {})


def test_init_weights_are_loaded_and_a_checkpoint_wins(tmp_path):
    torch.manual_seed(0)
    source = torch.nn.Linear(4, 3)
    torch.save({"model": source.state_dict()}, tmp_path / "init.pt")
    model = torch.nn.Linear(4, 3)
    assert not torch.equal(model.weight, source.weight)
    _fit(model, tmp_path / "run", init=str(tmp_path / "init.pt"))
    assert torch.equal(model.weight, source.weight) and torch.equal(model.bias, source.bias)
    # the run folder now has a checkpoint: starting again resumes from it, not from --init
    with torch.no_grad():
        source.weight.add_(1.0)
    torch.save({"model": source.state_dict()}, tmp_path / "init.pt")
    again = torch.nn.Linear(4, 3)
    _fit(again, tmp_path / "run", init=str(tmp_path / "init.pt"))
    assert torch.equal(again.weight, model.weight)
