"""CCP4i2 task `aisolve`: small-molecule structure solution from observed data (I/SIGI or F/SIGF).

Runs in-process (RUNEXTERNALPROCESS False) in both CCP4i2 generations. The work happens either
on an aisolve server (SERVER set: the pyzmq thin client, no cctbx in CCP4's Python) or in the
local `aisolve` command (a subprocess, so that cctbx never meets CCP4i2's own libraries).
An optional starting model (XYZIN: an earlier or partial model, mmCIF/PDB or .res) replaces
charge flipping: its phases start the model building. PHASER picks the phasing otherwise (auto:
the neural phaser where it applies, P2_1/c with small cells, else charge flipping; neural; flip).
REFINE_CYCLES sets the final refinement's least-squares cycles. The outputs: phases (PHSOUT: PHI,
FOM), map coefficients (FPHIOUT: F, PHI), the model as mmCIF (XYZOUT) plus the small-molecule .res and .cif, and program.xml with R1 and every atom's
element and confidence.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ccp4i2.config.settings")
try:  # CCP4i2 3.x (PyPI package)
    from ccp4i2.core.CCP4PluginScript import CPluginScript
except ImportError:  # classic CCP4i2
    from core.CCP4PluginScript import CPluginScript

HERE = Path(__file__).resolve().parent
DEF_XML = HERE / "aisolve.def.xml"


def register() -> None:
    """CCP4i2 3.x has a static task table: add this task to it (classic finds it by itself)."""
    try:
        from ccp4i2.core.tasks import TASKS, Task
    except ImportError:
        return
    TASKS.setdefault("aisolve", Task(
        title="aisolve: small-molecule structure solution", shortTitle="aisolve",
        description="Phases, elements, riding hydrogens and a refined model from small-molecule data",
        pluginPath=f"{__name__}:aisolve", defXmlPath=str(DEF_XML), ccp4_free=True))


register()


class aisolve(CPluginScript):  # noqa: N801 - CCP4i2 names the class after the task
    TASKNAME = "aisolve"
    TASKVERSION = "0.1"
    TASKMODULE = "expt_phasing"
    TASKTITLE = "aisolve: small-molecule structure solution"
    TASKCOMMAND = ""
    RUNEXTERNALPROCESS = False
    WHATNEXT = []
    ERROR_CODES = {
        201: {"description": "The reflection file cannot be used"},
        202: {"description": "The aisolve server did not answer"},
        203: {"description": "The aisolve server refused the job"},
        204: {"description": "The structure was not solved"},
        205: {"description": "Interrupted by the user"},
        206: {"description": "Unexpected error in the aisolve task"},
        207: {"description": "The aisolve command was not found"},
    }

    def startProcess(self, *args, **kwargs):  # classic passes (command, ...), 3.x nothing
        try:
            return self._run()
        except Exception as exc:  # noqa: BLE001 - reported in diagnostic.xml, never a traceback in the GUI
            self.appendErrorReport(206, f"{type(exc).__name__}: {exc}")
            return CPluginScript.FAILED

    # -- the job ------------------------------------------------------------------------------
    def _run(self):
        work = Path(self.workDirectory)
        mtz = Path(str(self.container.inputData.F_SIGF.fullPath))
        p = self.container.controlParameters
        params = {"hydrogens": "auto" if _value(p.ADD_HYDROGENS, True) else "none",
                  "phasing_time": float(_value(p.PHASING_TIME, 60.0)),
                  "refine_cycles": int(_value(p.REFINE_CYCLES, 10)),
                  "phaser": str(_value(p.PHASER, "auto"))}
        start = _set_path(self.container.inputData.XYZIN)
        if start is not None:
            params["start_model"] = start
        if _value(p.FORMULA):
            params["formula"] = str(p.FORMULA)
            if _value(p.Z):
                params["z"] = float(p.Z)
        else:
            params["no_formula"] = True
        if _value(p.RESOLUTION):
            params["d_min"] = float(p.RESOLUTION)
        out = Path(tempfile.mkdtemp(prefix="aisolve-", dir=work))
        ok = self._on_server(mtz, params, out) if _value(p.SERVER) else self._locally(mtz, params, out)
        if not ok:
            return CPluginScript.FAILED
        return self._outputs(out, mtz.stem, work)

    def _on_server(self, mtz: Path, params: dict, out: Path) -> bool:
        bundled = HERE / "thin_client"  # the installer's copy of the thin client (pyzmq only)
        if bundled.is_dir() and str(bundled) not in sys.path:
            sys.path.insert(0, str(bundled))
        from aisolve.server.client import Client, ServerError, ServerUnavailable
        p = self.container.controlParameters
        keys = {}
        if _value(p.SERVER_KEY):
            import zmq.auth
            keys = {"server_key": zmq.auth.load_certificate(str(p.SERVER_KEY))[0],
                    "client_keys": zmq.auth.load_certificate(os.path.join(str(p.CLIENT_KEYS), "client.key_secret"))}
        client = Client(str(p.SERVER), reply_timeout=10.0, retries=1, **keys)
        rid = None

        def idle():
            if self.testForInterrupt():
                raise KeyboardInterrupt

        try:
            from aisolve.server import protocol
            rid = protocol.new_request_id()
            attachments = {mtz.name: mtz.read_bytes()}
            if "start_model" in params:  # here a local path; on the wire an attachment
                start = Path(params["start_model"])
                params = dict(params)
                protocol.attach_start_model(params, attachments, start.name, start.read_bytes())
            header, files = client.call("solve", params, attachments, idle=idle, request_id=rid)
        except KeyboardInterrupt:
            client.cancel(rid)
            self.appendErrorReport(205, "the job was cancelled on the server")
            return False
        except ServerUnavailable as exc:
            self.appendErrorReport(202, str(exc))
            return False
        except ServerError as exc:
            self.appendErrorReport(201 if exc.code == "bad_input" else 203, exc.message)
            return False
        finally:
            client.close()
        for name, data in files.items():
            (out / Path(name).name).write_bytes(data)
        return True

    def _locally(self, mtz: Path, params: dict, out: Path) -> bool:
        exe = str(_value(self.container.controlParameters.AISOLVE, "aisolve"))
        exe = exe if os.path.isfile(exe) else shutil.which(exe)
        if not exe:
            self.appendErrorReport(207, "install aisolve or set AISOLVE to the path of its 'aisolve' command")
            return False
        cmd = [exe, "solve", str(mtz), "-o", str(out), "-q"]
        for key, flag in (("formula", "--formula"), ("z", "--z"), ("d_min", "--d-min"),
                          ("hydrogens", "--hydrogens"), ("phasing_time", "--phasing-time"),
                          ("refine_cycles", "--refine-cycles"), ("start_model", "--start-model"),
                          ("phaser", "--phaser")):
            if key in params:
                cmd += [flag, str(params[key])]
        if params.get("no_formula"):
            cmd.append("--no-formula")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            if self.testForInterrupt():
                proc.kill()
                self.appendErrorReport(205, "aisolve was stopped")
                return False
            time.sleep(0.2)
        stderr = proc.stderr.read()
        if proc.returncode == 2:
            self.appendErrorReport(201, stderr.strip().splitlines()[-1] if stderr.strip() else "bad input")
            return False
        if proc.returncode not in (0, 1):
            self.appendErrorReport(206, stderr.strip()[-500:])
            return False
        return True

    # -- outputs ------------------------------------------------------------------------------
    def _outputs(self, out: Path, stem: str, work: Path):
        report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
        res, cif, fcf = (out / f"{stem}.{ext}" for ext in ("res", "cif", "fcf"))
        _program_xml(work / "program.xml", report)
        if not report.get("solved") or not fcf.exists():
            self.appendErrorReport(204, "; ".join(report.get("warnings", [])) or "no solution")
            return CPluginScript.FAILED
        for f in (res, cif):
            shutil.copyfile(f, work / f.name)
        o = self.container.outputData
        hkl, cell, group, fo, fc, phi = _read_fcf(fcf)
        _write_mtz(_path(o.PHSOUT, work), hkl, cell, group, [("PHI", "P", phi), ("FOM", "W", [1.0] * len(phi))])
        _write_mtz(_path(o.FPHIOUT, work), hkl, cell, group, [("F", "F", fo), ("PHI", "P", phi)])
        _write_mmcif(cif, _path(o.XYZOUT, work, ".cif"))
        o.PHSOUT.annotation.set("aisolve phases")
        o.FPHIOUT.annotation.set("aisolve map coefficients (Fobs, PHIcalc)")
        o.XYZOUT.annotation.set("aisolve model")
        return CPluginScript.SUCCEEDED


def _value(item, default=None):
    try:
        if hasattr(item, "isSet") and not item.isSet():
            return default
        v = item.get() if hasattr(item, "get") else item
    except Exception:  # noqa: BLE001 - an unset CData
        return default
    return default if v in (None, "") else v


def _set_path(file_item) -> str | None:
    """The full path of an optional input file, or None when it is not set."""
    try:
        path = str(file_item.fullPath) if file_item.isSet() else ""
    except Exception:  # noqa: BLE001 - an unset CDataFile
        return None
    return path if path not in ("", "None") else None


def _path(file_item, work: Path, suffix: str | None = None) -> str:
    p = str(file_item.fullPath) if str(file_item.fullPath) not in ("", "None") else f"{file_item.objectName()}.mtz"
    path = Path(p) if Path(p).is_absolute() else work / p
    if suffix:
        path = path.with_suffix(suffix)
    file_item.setFullPath(str(path))
    return str(path)


def _read_fcf(path: Path):
    import gemmi
    block = gemmi.cif.read(str(path)).sole_block()
    cell = [float(block.find_value(f"_cell_{k}")) for k in
            ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")]
    hall = block.find_value("_symmetry_space_group_name_Hall")
    group = gemmi.find_spacegroup_by_ops(gemmi.symops_from_hall(gemmi.cif.as_string(hall).strip()))
    t = block.find("_refln_", ["index_h", "index_k", "index_l", "F_squared_meas", "F_calc", "phase_calc"])
    hkl = [(int(r[0]), int(r[1]), int(r[2])) for r in t]
    fo = [max(float(r[3]), 0.0) ** 0.5 for r in t]
    fc = [float(r[4]) for r in t]
    phi = [float(r[5]) for r in t]
    return hkl, cell, group, fo, fc, phi


def _write_mtz(path: str, hkl, cell, group, columns) -> None:
    import gemmi
    import numpy as np
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = group
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("aisolve")
    for label, kind, _ in columns:
        mtz.add_column(label, kind)
    data = np.column_stack([np.array(hkl, dtype=float)] + [np.array(v, dtype=float) for _, _, v in columns])
    mtz.set_data(data.astype(np.float32))
    mtz.write_to_file(path)


def _write_mmcif(small_cif: Path, path: str) -> None:
    """The small-molecule model as a macromolecular-style mmCIF, for CCP4i2's coordinate file type."""
    import gemmi
    small = gemmi.read_small_structure(str(small_cif))
    st = gemmi.Structure()
    st.cell = small.cell
    st.spacegroup_hm = small.spacegroup_hm if small.spacegroup_hm else "P 1"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    residue = gemmi.Residue()
    residue.name, residue.seqid = "UNL", gemmi.SeqId(1, " ")
    for site in small.sites:
        atom = gemmi.Atom()
        atom.name = site.label[:4]
        atom.element = site.element
        atom.pos = small.cell.orthogonalize(site.fract)
        atom.occ = site.occ
        atom.b_iso = 8 * 3.14159265 ** 2 * site.u_iso
        residue.add_atom(atom)
    chain.add_residue(residue)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.make_mmcif_document().write_file(path)


def _program_xml(path: Path, report: dict) -> None:
    root = ET.Element("aisolve")
    figures = report.get("figures") or {}
    for key in ("solved",):
        ET.SubElement(root, key).text = str(report.get(key))
    ET.SubElement(root, "Phasing").text = str((report.get("phasing") or {}).get("route"))
    ET.SubElement(root, "RefineCycles").text = str((report.get("options") or {}).get("refine_cycles"))
    for key in ("r1", "wr2", "goof"):
        if figures.get(key) is not None:
            ET.SubElement(root, key.upper()).text = f"{figures[key]:.4f}"
    atoms = ET.SubElement(root, "Atoms")
    for a in report.get("atoms", []):
        ET.SubElement(atoms, "Atom", label=a["label"], element=a["element"],
                      confidence=f"{a.get('confidence', 0):.3f}", second=str(a.get("second_best") or ""))
    for w in report.get("warnings", []):
        ET.SubElement(root, "Warning").text = w
    ET.ElementTree(root).write(path)
