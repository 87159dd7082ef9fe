"""`aisolve info` end to end, and the one-line errors for bad input (exit code 2, no traceback)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aisolve.core.errors import InputError
from aisolve.core.info import file_info
from aisolve.core.mtz_io import write_mtz
from aisolve.core.shelx_ins import read_ins
from conftest import EXAMPLE, REAL_ENTRIES, REFL_ONLY_ENTRIES, entry_files


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aisolve.server.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_info_on_ins_hkl_cif_mtz(tmp_path):
    # .ins with its .hkl beside it
    r = run_cli("info", EXAMPLE / "sucrose.ins")
    assert r.returncode == 0, r.stderr
    assert "P 1 21 1" in r.stdout and "C24 H44 O22" in r.stdout and "13643 measured" in r.stdout
    assert "completeness" in r.stdout and "d_min 0.728" in r.stdout
    # .hkl alone takes the cell from the model beside it
    r = run_cli("info", EXAMPLE / "sucrose.hkl")
    assert r.returncode == 0 and "cell from" in r.stdout
    # .res with atoms and Q-peaks
    r = run_cli("info", "--json", EXAMPLE / "reference" / "sucrose.res")
    info = json.loads(r.stdout)
    assert (info["model"]["n_non_h"], info["model"]["n_h"], info["model"]["n_q_peaks"]) == (23, 22, 10)
    # .cif and .mtz
    from aisolve.core.cif_io import write_cif_text
    st = read_ins(EXAMPLE / "reference" / "sucrose.res")
    (tmp_path / "s.cif").write_text(write_cif_text(st, hkl_text=(EXAMPLE / "sucrose.hkl").read_text()))
    idx = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.int32)
    write_mtz(tmp_path / "s.mtz", st.cell, st.space_group, idx,
              [("I", "J", np.array([10.0, 20, 30, 40])), ("SIGI", "Q", np.ones(4))])
    r = run_cli("info", "--json", tmp_path / "s.cif", tmp_path / "s.mtz")
    assert r.returncode == 0, r.stderr
    cif_info, mtz_info = json.loads(r.stdout)
    assert cif_info["model"]["n_atoms"] == 45 and cif_info["reflections"]["n_reflections"] == 13643
    assert mtz_info["reflections"]["n_reflections"] == 4 and mtz_info["model"]["space_group"] == "P 1 21 1"


def _bad_inputs(tmp):
    ins = (EXAMPLE / "sucrose.ins").read_text()
    hkl_lines = (EXAMPLE / "sucrose.hkl").read_text().splitlines()
    cases = {}
    d = tmp / "trunc"
    d.mkdir()
    (d / "x.ins").write_text(ins)
    (d / "x.hkl").write_text("\n".join(hkl_lines[:100]) + "\n" + hkl_lines[100][:15])
    cases["truncated hkl"] = (d / "x.hkl", "truncated")
    d = tmp / "garbage"
    d.mkdir()
    (d / "x.ins").write_text(ins)
    (d / "x.hkl").write_text("\n".join(hkl_lines[:50] + ["<html>not data</html>"] + hkl_lines[50:60]) + "\n")
    cases["hkl with text garbage"] = (d / "x.hkl", "line 51")
    (tmp / "nocell.ins").write_text("\n".join(l for l in ins.splitlines() if not l.startswith("CELL")))
    cases["ins without CELL"] = (tmp / "nocell.ins", "no CELL")
    (tmp / "elem.ins").write_text(ins.replace("SFAC C H O", "SFAC C H Qz"))
    cases["unknown element in SFAC"] = (tmp / "elem.ins", "unknown element 'Qz' in SFAC")
    (tmp / "noatoms.cif").write_text(
        "data_x\n_cell_length_a 5\n_cell_length_b 6\n_cell_length_c 7\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\n")
    cases["CIF with no atoms"] = (tmp / "noatoms.cif", "no atoms")
    st = read_ins(EXAMPLE / "sucrose.ins")
    write_mtz(tmp / "noi.mtz", st.cell, st.space_group, np.array([[1, 2, 3]], dtype=np.int32),
              [("FOM", "W", np.array([0.5]))])
    cases["MTZ without intensity columns"] = (tmp / "noi.mtz", "no intensity")
    cases["missing file"] = (tmp / "absent.hkl", "no such file")
    cases["unsupported type"] = (EXAMPLE / "LICENSE.md", "unsupported file type")
    return cases


def test_bad_input_is_one_line_exit_2(tmp_path):
    for name, (path, expected) in _bad_inputs(tmp_path).items():
        r = run_cli("info", path)
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        err = r.stderr.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, (name, err)
        assert expected in err and path.name in err, (name, err)


ALL_FILES = [f for e in REAL_ENTRIES + REFL_ONLY_ENTRIES
             for f in entry_files(e, (".ins", ".res", ".hkl", ".cif"))]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_every_shared_file_is_read_or_refused_clearly(path):
    """Every entry of ../shared/data/real and reflections-only: read, or one clear InputError."""
    try:
        info = file_info(path)
    except InputError as exc:
        assert exc.source and path.name in exc.source and exc.problem
        return
    assert "model" in info or "reflections" in info
    if "reflections" in info and "d_min" in info["reflections"]:
        assert 0.2 < info["reflections"]["d_min"] < 5
        assert 0 < info["reflections"]["completeness"] <= 1.0


def test_console_script_installed():
    exe = shutil.which("aisolve") or (sys.executable.rsplit("/", 1)[0] + "/aisolve")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "info" in r.stdout
