"""The shipped hydrogen network: loads, counts sucrose's H, ONNX = torch, rotation-invariant, and the
decoding that honours the formula's H total."""
from __future__ import annotations

import numpy as np
import pytest

from aisolve.core.evaluate import h_counts_by_distance
from aisolve.core.shelx_ins import read_ins
from aisolve.models.hydrogen_typer import HydrogenPredictor, NetworkHydrogens, decode_counts, weights_present
from conftest import EXAMPLE

pytestmark = pytest.mark.skipif(not weights_present(), reason="no shipped hydrogen-network weights")
REFERENCE = EXAMPLE / "reference" / "sucrose.res"


def _heavy(st):
    heavy = [a for a in st.atoms if a.element != "H"]
    xs = type(st)(cell=st.cell, space_group=st.space_group, atoms=heavy).to_xray(include_hydrogens=False)
    return heavy, xs


def test_shipped_network_counts_sucrose_hydrogens():
    st = read_ins(REFERENCE)
    truth = [n for a, n in zip(st.atoms, h_counts_by_distance(st)) if a.element != "H"]
    _, xs = _heavy(st)
    counts = NetworkHydrogens().counts(xs, st.cell_contents)
    assert counts == truth
    assert sum(counts) * st.space_group.order_z() == st.cell_contents["H"]


def test_onnx_and_torch_agree_and_rotation_changes_nothing():
    from aisolve.models.element_net import composition_vector
    from aisolve.models.graph_inputs import build_input
    from aisolve.models.h_data import relative_ueq
    st = read_ins(REFERENCE)
    heavy, xs = _heavy(st)
    tokens = np.array([6 if a.element == "C" else 8 for a in heavy])
    gi = build_input(np.array([a.xyz for a in heavy]), relative_ueq([0.03] * len(heavy)), st.cell,
                     st.space_group.type().hall_symbol(), tokens=tokens)
    comp = composition_vector(st.cell_contents).numpy()
    onnx, torch_ = HydrogenPredictor(backend="onnx"), HydrogenPredictor(backend="torch")
    assert onnx.backend.name == "onnxruntime" and torch_.backend.name == "torch"
    a, b = onnx.logits(gi, tokens, comp), torch_.logits(gi, tokens, comp)
    assert np.abs(a - b).max() < 1e-3
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    gi.pos = (gi.pos @ rot.T + np.array([3.0, -1.0, 2.0])).astype(np.float32)
    c = onnx.logits(gi, tokens, comp)
    assert np.abs(a - c).max() < 1e-3 and (a.argmax(axis=1) == c.argmax(axis=1)).all()


def test_decoding_honours_the_formula_total():
    # three atoms, each most likely 1 H; the formula says 4 in all: the cheapest change is the
    # atom whose second choice (2 H) is nearly as likely
    p = np.log(np.array([[0.05, 0.90, 0.05, 0, 0], [0.05, 0.55, 0.40, 0, 0], [0.05, 0.85, 0.10, 0, 0]]) + 1e-9)
    assert decode_counts(p, [1, 1, 1], None) == [1, 1, 1]
    assert decode_counts(p, [1, 1, 1], 4.0) == [1, 2, 1]
    # an atom on a special position (weight 1/2) counts half
    assert decode_counts(p, [1, 0.5, 1], 3.0) == [1, 2, 1]
    # a total far off the predictions is not forced: missing H cost less than wrong atoms
    assert decode_counts(p, [1, 1, 1], 12.0) == [1, 2, 1]


def test_solve_with_network_hydrogens(tmp_path):
    """`aisolve solve --hydrogens network` on the shipped example: every H count right, written as AFIX."""
    import json

    from aisolve.server.cli import main
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLE / "sucrose.ins"), str(EXAMPLE / "sucrose.hkl"), "-o", str(out), "-q",
                 "--hydrogens", "network"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["h_counts"] == "network"
    assert any(s["stage"] == "hydrogen_counts" for s in report["stages"])
    res = read_ins(out / "sucrose.res")
    assert len(res.hydrogens()) == 22 and report["figures"]["r1"] < 0.05
    assert {a.afix for a in res.hydrogens()} <= {13, 23, 147}
