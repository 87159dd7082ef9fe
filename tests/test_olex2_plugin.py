"""The Olex2 plugin against a real server on loopback, inside stand-in olx/olex/olex_core/OV modules."""
from __future__ import annotations

import ast
import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from aisolve.core.shelx_ins import read_ins
from conftest import REAL, REPO
from test_server import RunningServer

PLUGIN = REPO / "olex2_plugin" / "plugin-AISolve"
STANDIN = Path(__file__).parent / "olex2_standin"
ENTRY = "olex2-gui__ZZULI2"
pytestmark = pytest.mark.skipif(REAL is None or not (REAL / ENTRY).is_dir(), reason="shared real data absent")


@pytest.fixture(scope="module")
def server():
    s = RunningServer(5735, workers=1)
    s.wait_for_workers(1)
    yield s
    s.stop()


@pytest.fixture()
def plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(STANDIN))
    monkeypatch.syspath_prepend(str(PLUGIN))
    for name in ("AISolve", "aisolve_apply", "_state", "olx", "olex", "olex_core", "olexFunctions", "olex_xgrid"):
        sys.modules.pop(name, None)
    state = importlib.import_module("_state").STATE
    module = importlib.import_module("AISolve")
    return module, state


def _empty_places(n: int) -> list[tuple[float, float, float]]:
    """Places at least 1.75 A from every atom (H included) of the entry and its symmetry copies:
    the emptiest spots of this dense crystal, where a peak would be noise."""
    ref = read_ins(REAL / ENTRY / f"{ENTRY}.ins")
    uc, ops = ref.unit_cell, ref.space_group.all_ops()
    rng = np.random.default_rng(3)
    out: list = []
    if n == 0:
        return out
    for _ in range(3000):
        p = tuple(float(v) for v in rng.random(3))
        if min(uc.mod_short_distance(op * a.xyz, p) for a in ref.atoms for op in ops) > 1.75 and \
                all(uc.mod_short_distance(op * q, p) > 2.5 for q in out for op in ops):
            out.append(p)
            if len(out) == n:
                return out
    raise AssertionError("no empty places found")


def _files(tmp_path: Path, as_peaks: bool, omit: tuple[str, ...] = (), spurious: int = 0) -> tuple[Path, Path]:
    """The entry's .ins with its H removed and its other atoms either turned into Q-peaks or removed."""
    src = REAL / ENTRY / f"{ENTRY}.ins"
    lines = src.read_text().splitlines()
    ref = read_ins(src)
    out, q = [], 0
    i = 0
    while i < len(lines):
        line = lines[i]
        words = line.split()
        is_atom = words and any(a.label == words[0] for a in ref.atoms)
        if is_atom or (words and words[0].upper() == "AFIX"):
            if is_atom and line.rstrip().endswith("="):
                i += 1  # its continuation line
            if is_atom and as_peaks and words[0][0].upper() != "H" and words[0] not in omit:
                q += 1
                out.append(f"Q{q}   1 {words[2]} {words[3]} {words[4]} 11.0 0.05 {3.0 - 0.1 * q:.2f}")
            i += 1
            continue
        if words and words[0].upper() == "HKLF":
            for k, p in enumerate(_empty_places(spurious)):
                out.append(f"Q{q + k + 1}   1 {p[0]:.5f} {p[1]:.5f} {p[2]:.5f} 11.0 0.05 0.80")
        out.append(line)
        i += 1
    ins = tmp_path / "zz.ins"
    ins.write_text("\n".join(out) + "\n")
    hkl = tmp_path / "zz.hkl"
    shutil.copy(REAL / ENTRY / f"{ENTRY}.hkl", hkl)
    return ins, hkl


def _setup(state, ins, hkl, url):
    state.reset(str(ins), str(hkl))
    state.params.update({"aisolve.server_url": url, "aisolve.timeout": 300})


def test_q_peaks_become_the_right_atoms_with_riding_hydrogens_and_undo_restores(plugin, server, tmp_path):
    module, state = plugin
    ins, hkl = _files(tmp_path, as_peaks=True, spurious=2)
    _setup(state, ins, hkl, server.url)
    original = (list(state.structure.atoms), [(p.label, p.xyz) for p in state.structure.peaks])
    assert len(original[1]) == 16
    replies = _record_replies(module)
    state.functions["spy.aisolve.run"]()
    assert not [m for m in state.messages if m[0] == "error"], state.messages
    log = state.log
    first_edit = min(i for i, m in enumerate(log) if m.split()[0] in ("name", "kill", "HAdd", "NewAtom"))
    assert log[0] == "File" and "spy.create_history" in log[:first_edit]
    names = [m for m in log if m.startswith("name ")]
    assert len(names) == 14 and all(m.split()[1].startswith("Q") for m in names)
    assert [m for m in log if m.startswith("kill ")] == ["kill Q15 Q16"]  # the two peaks in empty space
    # the final model is the server's answer: its elements at the peaks' places...
    answers = dict(replies)
    peaks = {p[0]: p[1] for p in original[1]}
    final = state.structure
    assert not final.peaks
    for row in answers["assign_elements"][0]["assignments"]:
        if row["element"] is None:
            continue
        match = [b for b in final.non_h_atoms() if np.allclose(b.xyz, peaks[row["label"]], atol=1e-4)]
        assert len(match) == 1 and match[0].element == row["element"], row
    # ...and its riding H: HAdd with the server's AFIX code on each pivot
    from aisolve_apply import hydrogen_groups, parse_res
    res = next(v for k, v in answers["add_hydrogens"][1].items() if k.endswith(".res")).decode()
    expected = {pivot: n for pivot, _afix, n in hydrogen_groups(parse_res(res)[1])}
    got = {}
    pivot = None
    for a in final.atoms:
        if a.element == "H":
            got[pivot] = got.get(pivot, 0) + 1
        else:
            pivot = a.label
    assert got == expected and sum(expected.values()) >= 8
    hadds = [m for m in log if m.startswith("HAdd ")]
    assert any(m.startswith("HAdd 23 ") for m in hadds) and len(hadds) == len({m.split()[1] for m in hadds})
    assert log[-1] == "refine 10"
    assert "AI solve done" in state.messages[-1][1] and state.refreshes > 0  # the GUI kept painting
    # Olex2's undo, once per undoable macro, gives back the model the user had
    n_undoable = sum(1 for m in log if m.split()[0] in ("name", "kill", "HAdd"))
    for _ in range(n_undoable):
        state.macro("undo")
    _assert_model(state, original)
    # and so does the panel's "Undo AI solve", after a second run
    state.functions["spy.aisolve.run"]()
    assert state.structure.hydrogens()
    state.functions["spy.aisolve.undo"]()
    _assert_model(state, original)
    assert state.log[-n_undoable:] == ["undo"] * n_undoable and "undone" in state.messages[-1][1]


def _assert_model(state, original):
    assert [a.label for a in state.structure.atoms] == [a.label for a in original[0]]
    assert [(p.label, p.xyz) for p in state.structure.peaks] == original[1]


def test_empty_model_is_solved_and_the_history_point_keeps_the_old_one(plugin, server, tmp_path):
    module, state = plugin
    ins, hkl = _files(tmp_path, as_peaks=False)
    _setup(state, ins, hkl, server.url)
    state.functions["spy.aisolve.run"]()
    assert not [m for m in state.messages if m[0] == "error"], state.messages
    log = state.log
    new_atoms = [m for m in log if m.startswith("NewAtom ")]
    assert len(new_atoms) == 14 and log.index("spy.create_history") < log.index(new_atoms[0])
    assert "EndUpdate" in log
    formula = sorted(a.element for a in state.structure.non_h_atoms())
    assert formula == sorted(["Cu"] * 2 + ["Cl"] * 2 + ["N"] * 4 + ["C"] * 6)
    assert sum(1 for a in state.structure.atoms if a.element == "H") == 10
    assert state.history[0] == ([], [])  # the pre-AI model, restorable from the history
    assert log.index("EndUpdate") < log.index(next(m for m in log if m.startswith("HAdd ")))
    # the solution's density shown as a map, levels in sigma
    dims, data = state.map
    grid = np.frombuffer(data, dtype=np.float32).reshape(dims)
    assert min(dims) >= 16 and abs(float(grid.mean())) < 0.1 and 0.9 < float(grid.std()) < 1.1
    assert "xgrid.SetVisible True" in state.log
    state.functions["spy.aisolve.undo"]()  # the added atoms go, and their H with them
    assert not state.structure.atoms and not state.structure.peaks


def test_server_down_and_bad_data_show_messages_and_change_nothing(plugin, server, tmp_path):
    module, state = plugin
    ins, hkl = _files(tmp_path, as_peaks=True)
    _setup(state, ins, hkl, "tcp://127.0.0.1:5799")  # nobody listens there
    state.params["aisolve.timeout"] = 5
    module.aisolve_plugin._client = _quick(module.aisolve_plugin._client)
    before = [(p.label, p.xyz) for p in state.structure.peaks]
    state.functions["spy.aisolve.run"]()
    assert state.messages[-1][0] == "error" and "does not answer" in state.messages[-1][1]
    assert state.log == ["File"] and [(p.label, p.xyz) for p in state.structure.peaks] == before

    hkl.write_text("   1   2   x  12.00    1.00\n")
    _setup(state, ins, hkl, server.url)
    state.functions["spy.aisolve.run"]()
    assert state.messages[-1][0] == "error" and "zz.hkl" in state.messages[-1][1]
    assert state.log == ["File"]


def test_atoms_missing_from_the_model_are_added(plugin, server, tmp_path):
    module, state = plugin
    ins, hkl = _files(tmp_path, as_peaks=True, omit=("C3", "N2"))
    _setup(state, ins, hkl, server.url)
    original = (list(state.structure.atoms), [(p.label, p.xyz) for p in state.structure.peaks])
    state.functions["spy.aisolve.run"]()
    assert not [m for m in state.messages if m[0] == "error"], state.messages
    log = state.log
    added = [m for m in log if m.startswith("NewAtom ")]
    assert len(added) == 2 and log.index("spy.create_history") < log.index(added[0])
    # direct edits before every undoable macro, so that undoing the macros cannot skip over them
    assert log.index(added[-1]) < min(i for i, m in enumerate(log) if m.split()[0] in ("name", "kill", "HAdd"))
    ref = read_ins(REAL / ENTRY / f"{ENTRY}.ins")
    uc, ops = ref.unit_cell, ref.space_group.all_ops()
    for label in ("C3", "N2"):
        a = next(x for x in ref.atoms if x.label == label)
        assert min(uc.mod_short_distance(op * b.xyz, a.xyz) for b in state.structure.non_h_atoms()
                   for op in ops) < 0.3, label
    assert len(state.structure.non_h_atoms()) == 14
    state.functions["spy.aisolve.undo"]()
    _assert_model(state, original)
    assert state.log[-1] == "kill " + " ".join(m.split()[1] for m in added)


def _record_replies(module) -> list:
    """The server's answers as the plugin received them: (method, (header, files))."""
    seen = []
    call = module.aisolve_plugin._call

    def recording(client, method, params, files):
        out = call(client, method, params, files)
        seen.append((method, out))
        return out
    module.aisolve_plugin._call = recording
    return seen


def _quick(make_client):
    def client():
        c = make_client()
        c.reply_timeout, c.retries = 1.0, 0
        return c
    return client


def test_missing_pyzmq_is_a_message(plugin, tmp_path):
    module, state = plugin
    ins, hkl = _files(tmp_path, as_peaks=True)
    _setup(state, ins, hkl, "tcp://127.0.0.1:5799")
    module.HAVE_ZMQ = False
    state.functions["spy.aisolve.run"]()
    assert "pip pyzmq" in state.messages[-1][1] and state.log == []


def test_plugin_is_python38_syntax():
    for path in PLUGIN.glob("*.py"):
        ast.parse(path.read_text(), feature_version=(3, 8))


def test_install_and_uninstall_into_an_olex2_folder(tmp_path):
    from aisolve.server.cli import main
    olex2 = tmp_path / "olex2"
    (olex2 / "util" / "pyUtil" / "PluginLib").mkdir(parents=True)
    (olex2 / "plugins.xld").write_text("<Plugin\n<Other>\n>\n")
    assert main(["install-olex2", "--olex2-dir", str(olex2)]) == 0
    target = olex2 / "util" / "pyUtil" / "PluginLib" / "plugin-AISolve"
    for name in ("AISolve.py", "aisolve_apply.py", "def.txt", "AISolve.phil", "AISolve.htm",
                 "aisolve/server/client.py", "aisolve/server/protocol.py"):
        assert (target / name).is_file(), name
    xld = (olex2 / "plugins.xld").read_text()
    assert "<AISolve>" in xld and "<Other>" in xld
    assert (olex2 / "plugins.xld.aisolve-backup").read_text() == "<Plugin\n<Other>\n>\n"
    assert main(["install-olex2", "--olex2-dir", str(olex2), "--uninstall"]) == 0
    assert not target.exists() and "<AISolve>" not in (olex2 / "plugins.xld").read_text()
    assert main(["install-olex2", "--olex2-dir", str(tmp_path / "nowhere")]) == 2


def test_water_h_are_added_where_the_server_put_them_not_by_hadd():
    """A model with waters (olex2-gui__timmy_timmy): the server's .res has their H as AFIX 3 (so are
    the OH of the two hydroxyls that bind Ca, which smtbx cannot ride); the plan adds those H at
    their positions and keeps them out of the HAdd macros."""
    from aisolve.core.loaders import data_hklf, load_reflections
    from aisolve.core.pipeline import add_hydrogens
    from aisolve.core.shelx_write import write_ins_text
    entry = "olex2-gui__timmy_timmy"
    if not (REAL / entry).is_dir():
        pytest.skip("entry absent")
    st = read_ins(REAL / entry / f"{entry}.res")
    st.atoms = [a for a in st.atoms if a.element != "H"]
    model, _figures, _warnings = add_hydrogens(st, load_reflections(REAL / entry / f"{entry}.hkl", data_hklf(st)))
    sys.path.insert(0, str(PLUGIN))
    try:
        plan = importlib.import_module("aisolve_apply")
    finally:
        sys.path.remove(str(PLUGIN))
    atoms = plan.parse_res(write_ins_text(model))[1]
    placed = plan.placed_hydrogens(atoms)
    as_placed = {p: n for p, afix, n in plan.hydrogen_groups(atoms) if afix == 3}
    assert as_placed == {"O1L": 2, "O2L": 2, "O1W": 2, "O2W": 2, "O3": 1, "O4": 1}
    assert len(placed) == 10
    pivots_of_placed = set(as_placed)
    hadd_pivots = [p for _code, pivots in plan.hadd_commands(plan.hydrogen_groups(atoms)) for p in pivots]
    assert hadd_pivots and not pivots_of_placed & set(hadd_pivots)
