"""The CCP4i2 task inside the real ccp4i2 3.x package: embedded (subprocess) and through a server."""
from __future__ import annotations

import importlib.util
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from conftest import REAL, REPO

ccp4i2 = pytest.importorskip("ccp4i2")
TASK = REPO / "ccp4i2_task" / "aisolve" / "script" / "aisolve.py"
ENTRY = "olex2-gui__ZZULI2"
pytestmark = pytest.mark.skipif(REAL is None or not (REAL / ENTRY).is_dir(), reason="shared real data absent")


def _task_class():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp4i2.config.settings")
    spec = importlib.util.spec_from_file_location("aisolve_ccp4i2_task", TASK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.aisolve


def _mtz(tmp_path: Path, columns: str = "I") -> Path:
    """The entry's reflections, merged, as an MTZ written with gemmi (as a CCP4 user has them)."""
    from aisolve.core.data_prep import prepare
    from aisolve.core.loaders import load_reflections, load_structure
    from aisolve.core.mtz_io import write_mtz
    st = load_structure(REAL / ENTRY / f"{ENTRY}.ins")
    merged = prepare(load_reflections(REAL / ENTRY / f"{ENTRY}.hkl"), st.symmetry, st.cell_contents).fo_sq
    i, sig = merged.data().as_numpy_array(), merged.sigmas().as_numpy_array()
    cols = [("I", "J", i), ("SIGI", "Q", sig)] if columns == "I" else [("FOO", "R", i)]
    path = tmp_path / "zz.mtz"
    write_mtz(path, st.cell, st.space_group, np.array(merged.indices()), cols)
    return path


def _run(tmp_path: Path, mtz: Path, xyzin: Path | None = None, **params):
    cls = _task_class()
    job = tmp_path / "job"
    job.mkdir()
    task = cls(workDirectory=str(job), name="job")
    task.container.inputData.F_SIGF.setFullPath(str(mtz))
    if xyzin is not None:
        task.container.inputData.XYZIN.setFullPath(str(xyzin))
    task.container.controlParameters.FORMULA.set("C6 H10 N4 Cl2 Cu")
    task.container.controlParameters.AISOLVE.set(str(Path(sys.executable).parent / "aisolve"))
    for key, value in params.items():
        getattr(task.container.controlParameters, key).set(value)
    status = task.process()
    return task, status, job


def test_task_solves_and_writes_phases_map_coefficients_and_model(tmp_path):
    import gemmi
    task, status, job = _run(tmp_path, _mtz(tmp_path))
    assert status == task.SUCCEEDED, str(task.errorReport)
    assert len(task.errorReport) == 0  # what CCP4i2 writes to diagnostic.xml (3.x writes the file only on errors)
    diag = job / "diagnostic.xml"
    assert not diag.exists() or "<errorReport>" not in diag.read_text()
    phs = gemmi.read_mtz_file(str(task.container.outputData.PHSOUT.fullPath))
    assert [c.label for c in phs.columns][3:] == ["PHI", "FOM"]
    phi = phs.column_with_label("PHI").array
    assert np.all(np.abs(phi) <= 180.0) and np.std(phi) > 30  # real phases, not a constant
    fphi = gemmi.read_mtz_file(str(task.container.outputData.FPHIOUT.fullPath))
    assert [c.label for c in fphi.columns][3:] == ["F", "PHI"] and fphi.column_with_label("F").array.max() > 0
    st = gemmi.read_structure(str(task.container.outputData.XYZOUT.fullPath))
    atoms = [a for r in st[0][0] for a in r]
    assert sum(a.element.name != "H" for a in atoms) == 14 and sum(a.element.name == "H" for a in atoms) == 10
    assert (job / "zz.res").exists() and (job / "zz.cif").exists()
    assert "<R1>" in (job / "program.xml").read_text()
    # PHASER auto: ZZULI2 (P2_1/n, b = 16.4 A) is outside the neural phaser's cells: charge flipping
    assert ET.parse(job / "program.xml").getroot().findtext("Phasing") == "charge_flipping"


def test_missing_columns_fail_with_an_error_report(tmp_path):
    task, status, job = _run(tmp_path, _mtz(tmp_path, columns="none"))
    assert status == task.FAILED and task.errorReport.count(code=201) == 1
    assert "no intensity" in str(task.errorReport)


def _partial_mmcif(tmp_path: Path, drop: tuple[str, ...], cell_scale: float = 1.0) -> Path:
    """The published model without H and without some atoms, as the mmCIF a CCP4i2 user would pick."""
    import gemmi

    from aisolve.core.loaders import load_structure
    ref = load_structure(REAL / ENTRY / f"{ENTRY}.ins")
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*[v * cell_scale if k < 3 else v for k, v in enumerate(ref.cell)])
    st.spacegroup_hm = "P 1"
    residue = gemmi.Residue()
    residue.name, residue.seqid = "UNL", gemmi.SeqId(1, " ")
    for a in ref.non_h_atoms():
        if a.label in drop:
            continue
        atom = gemmi.Atom()
        atom.name, atom.element, atom.occ, atom.b_iso = a.label, gemmi.Element(a.element), 1.0, 3.0
        atom.pos = st.cell.orthogonalize(gemmi.Fractional(*a.xyz))
        residue.add_atom(atom)
    chain = gemmi.Chain("A")
    chain.add_residue(residue)
    model = gemmi.Model("1")
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    path = tmp_path / "partial.cif"
    st.make_mmcif_document().write_file(str(path))
    return path


def test_starting_model_is_completed_and_refined_with_the_cycles_asked(tmp_path):
    import gemmi
    task, status, job = _run(tmp_path, _mtz(tmp_path), REFINE_CYCLES=5,
                             xyzin=_partial_mmcif(tmp_path, drop=("C3", "N2", "Cl2")))
    assert status == task.SUCCEEDED, str(task.errorReport)
    xml = ET.parse(job / "program.xml").getroot()
    assert xml.findtext("Phasing") == "starting_model" and xml.findtext("RefineCycles") == "5"
    st = gemmi.read_structure(str(task.container.outputData.XYZOUT.fullPath))
    atoms = [a for r in st[0][0] for a in r]
    assert sum(a.element.name != "H" for a in atoms) == 14  # the three left out are found again
    assert float(xml.findtext("R1")) < 0.04


def test_starting_model_with_another_cell_is_refused(tmp_path):
    task, status, job = _run(tmp_path, _mtz(tmp_path), xyzin=_partial_mmcif(tmp_path, drop=(), cell_scale=1.1))
    assert status == task.FAILED and task.errorReport.count(code=201) == 1
    assert "partial.cif" in str(task.errorReport) and "cell does not fit" in str(task.errorReport)


def test_server_down_fails_with_an_error_report(tmp_path):
    task, status, job = _run(tmp_path, _mtz(tmp_path), SERVER="tcp://127.0.0.1:5798")
    assert status == task.FAILED and task.errorReport.count(code=202) == 1


def test_task_through_a_server(tmp_path):
    from test_server import RunningServer
    s = RunningServer(5745, workers=1)
    try:
        s.wait_for_workers(1)
        task, status, job = _run(tmp_path, _mtz(tmp_path), SERVER=s.url, PHASER="flip")
        assert status == task.SUCCEEDED, str(task.errorReport)
        assert Path(str(task.container.outputData.PHSOUT.fullPath)).exists()
        assert ET.parse(job / "program.xml").getroot().findtext("Phasing") == "charge_flipping"
    finally:
        s.stop()


def test_task_file_is_found_by_ccp4i2():
    cls = _task_class()
    from ccp4i2.core.tasks import TASKS, locate_def_xml
    assert "aisolve" in TASKS and locate_def_xml("aisolve") == (TASK.parent / "aisolve.def.xml").resolve()
    assert cls.RUNEXTERNALPROCESS is False


def test_install_into_a_classic_ccp4i2_folder(tmp_path):
    from aisolve.server.cli import main
    top = tmp_path / "ccp4i2"
    (top / "wrappers").mkdir(parents=True)
    (top / "core").mkdir()
    (top / "core" / "CachedLookups.json").write_text("{}")
    assert main(["install-ccp4i2", "--ccp4i2-dir", str(top)]) == 0
    assert (top / "wrappers" / "aisolve" / "script" / "aisolve.py").is_file()
    assert (top / "wrappers" / "aisolve" / "script" / "aisolve.def.xml").is_file()
    assert (top / "wrappers" / "aisolve" / "script" / "thin_client" / "aisolve" / "server" / "client.py").is_file()
    assert not (top / "core" / "CachedLookups.json").exists()
    assert main(["install-ccp4i2", "--ccp4i2-dir", str(top), "--uninstall"]) == 0
    assert not (top / "wrappers" / "aisolve").exists()
    assert main(["install-ccp4i2", "--ccp4i2-dir", str(tmp_path / "nowhere")]) == 2


def test_ccp4i2_report_lists_figures_and_atoms(tmp_path):
    task, status, job = _run(tmp_path, _mtz(tmp_path))
    assert status == task.SUCCEEDED
    spec = importlib.util.spec_from_file_location("aisolve_ccp4i2_report", TASK.with_name("aisolve_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    xml = ET.parse(job / "program.xml").getroot()
    report = module.aisolve_report(xmlnode=xml, jobInfo={"fileroot": str(job)})
    text = ET.tostring(report.as_data_etree(), encoding="unicode")
    assert len(xml.findall("Atoms/Atom")) == 14 and xml.findtext("R1")
    assert "Confidence" in text and "Cu" in text and "R1 " in text
