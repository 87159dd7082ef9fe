"""aisolve for Olex2: the "AI solve" button (Python 3.8, Olex2's embedded interpreter).

Two ways, chosen by the current model:
- atoms or Q-peaks present: the server assigns elements to them (`assign_elements`, also finding
  atoms the model lacks); the plugin adds the missing atoms (NewAtom), renames/retypes the sites
  with `name` and deletes the ones that are no atoms with `kill`; then it asks for riding hydrogens
  (`add_hydrogens`) and adds them with `HAdd <AFIX code> <pivots>`, the server's H count per pivot
  (water H and OH on metals, which no HAdd code places, are added with NewAtom at the server's
  positions);
- nothing yet (a fresh .ins): the server solves the structure (`solve`); its atoms are added with
  NewAtom, then the same hydrogen step.
A history point comes first. Direct edits (NewAtom) come before every macro, so that Olex2's
`undo` of the macros (name, kill, HAdd) leads back to the old model plus the added atoms, and the
panel's "Undo AI solve" (spy.aisolve.undo) does that and deletes the added atoms: the pre-AI model.
The server call waits in a poll loop that keeps the GUI painting (olx.Refresh). Every failure is
reported in the status line and changes nothing.
"""
from __future__ import annotations

import json
import os
import sys

import olex  # noqa: F401  (Olex2 runtime)
import olex_core
import olx
from olexFunctions import OV

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # the bundled thin client (aisolve/server/client.py) and aisolve_apply

import aisolve_apply as plan  # noqa: E402

try:
    import zmq  # noqa: F401
    HAVE_ZMQ = True
except ImportError:  # the plugin still loads and says how to install it
    HAVE_ZMQ = False

SETTINGS = {"server_url": "tcp://127.0.0.1:5555", "server_key": "", "client_keys": "", "timeout": 900,
            "use_formula": True, "add_hydrogens": True, "refine_after": True, "typer": "auto"}


def setting(name):
    value = OV.GetParam("aisolve.%s" % name)
    return SETTINGS[name] if value in (None, "") else value


class AISolve:
    def __init__(self):
        self.status = ""
        self.undoable = 0  # undoable macros of the last AI solve
        self.added = []  # labels of the atoms it added by direct edits (not undoable by Olex2)
        OV.registerFunction(self.run, False, "aisolve")
        OV.registerFunction(self.undo, False, "aisolve")
        OV.registerFunction(self.status_text, False, "aisolve")

    def status_text(self):
        return self.status

    def _say(self, text, level="info"):
        self.status = text
        olx.Echo(text, m=level)

    def _macro(self, text):
        """An undoable Olex2 macro, counted so that undo() can take it back."""
        olex.m(text)
        self.undoable += 1

    def _new_atoms(self, atoms):
        """Atoms added by direct edits, before any macro (see the module notes); remembered for undo()."""
        for label, xyz in atoms:
            olx.xf.au.NewAtom(label, *xyz)
            self.added.append(label)
        if atoms:
            olx.xf.EndUpdate()

    # -- the buttons ----------------------------------------------------------------------------
    def undo(self):
        """Back to the model before the last AI solve: Olex2's undo for each of its macros, then the
        atoms it added are deleted."""
        try:
            if not self.undoable and not self.added:
                self._say("AI solve: nothing to undo")
                return
            for _ in range(self.undoable):
                olex.m("undo")
            if self.added:
                olex.m("kill " + " ".join(self.added))
            self.undoable, self.added = 0, []
            self._say("AI solve undone: the model is the one before AI solve")
        except Exception as exc:  # Olex2 swallows exceptions of registered functions: report it
            self._say("AI solve undo failed: %s: %s" % (type(exc).__name__, exc), "error")

    def run(self):
        try:
            self._run()
        except Exception as exc:  # Olex2 swallows exceptions of registered functions: report it
            self._say("AI solve failed: %s: %s" % (type(exc).__name__, exc), "error")

    def _run(self):
        if not HAVE_ZMQ:
            self._say("AI solve needs pyzmq: type 'pip pyzmq' on Olex2's command line, then restart Olex2",
                      "error")
            return
        from aisolve.server.client import ServerError, ServerUnavailable
        OV.File()  # the current model, saved to its file
        model_path, hkl_path = OV.FileFull(), OV.HKLSrc()
        if not hkl_path or not os.path.isfile(hkl_path):
            self._say("AI solve: no reflection file for this structure", "error")
            return
        stem = os.path.splitext(os.path.basename(model_path))[0]
        files = {stem + ".ins": _read(model_path), stem + ".hkl": _read(hkl_path)}
        params = {"typer": setting("typer"), "no_formula": not setting("use_formula"), "timeout": setting("timeout")}
        sites = self._current_sites()
        r1_before = _r1()
        self.undoable, self.added = 0, []
        try:
            with self._client() as client:
                if sites:
                    edits = self._assign(client, files, params, sites)
                else:
                    edits = self._solve(client, files, params)
                if edits is None:
                    return
                if setting("add_hydrogens"):
                    OV.File()
                    files[stem + ".ins"] = _read(model_path)
                    self._hydrogens(client, files, params)
        except ServerUnavailable as exc:
            self._say("AI solve: the server does not answer (%s)" % exc, "error")
            return
        except ServerError as exc:
            self._say("AI solve: the server refused the job: %s" % exc.message, "error")
            return
        if setting("refine_after"):
            self._macro("refine 10")
        r1_after = _r1()
        self._say("AI solve done: R1 %s -> %s. %s" % (_fmt(r1_before), _fmt(r1_after), edits))

    def _client(self):
        from aisolve.server.client import Client
        server_key = client_keys = None
        if setting("server_key"):
            import zmq.auth
            server_key = zmq.auth.load_certificate(setting("server_key"))[0]
            client_keys = zmq.auth.load_certificate(os.path.join(setting("client_keys"), "client.key_secret"))
        return Client(setting("server_url"), server_key=server_key, client_keys=client_keys,
                      reply_timeout=10.0, retries=1)

    def _call(self, client, method, params, files):
        def progress(fraction, message):
            self.status = "AI solve: %s (%d %%)" % (message, int(100 * fraction))
            olx.Refresh()
        return client.call(method, params, files, progress=progress, timeout=float(setting("timeout")) + 30,
                           idle=olx.Refresh)

    # -- the two ways -------------------------------------------------------------------------
    def _current_sites(self):
        model = olex_core.GetRefinementModel(False)
        sites = []
        for residue in model["aunit"]["residues"]:
            for atom in residue["atoms"]:
                if atom["type"] not in ("H", "D"):
                    sites.append({"label": atom["label"], "type": atom["type"], "is_peak": atom["type"] == "Q"})
        return sites

    def _assign(self, client, files, params, sites):
        header, _ = self._call(client, "assign_elements", dict(params, complete=True), files)
        renames, kills, additions = plan.rename_plan(sites, header["assignments"])
        olex.m("spy.create_history")
        self._new_atoms(additions)  # atoms the model lacked
        for old, new in renames:
            self._macro("name %s %s" % (old, new))
        if kills:
            self._macro("kill " + " ".join(kills))
        unsure = [r for r in header["assignments"] if r.get("element") and (r.get("confidence") or 1) < 0.8]
        for r in unsure:
            probs = sorted(r.get("probabilities", {}).items(), key=lambda kv: -kv[1])
            olx.Echo("low confidence: %s -> %s (%s)" % (r["label"], r["element"],
                                                         ", ".join("%s %.2f" % kv for kv in probs[:3])), m="warning")
        return "%d atoms named, %d peaks removed, %d atoms added" % (len(renames), len(kills), len(additions))

    def _solve(self, client, files, params):
        header, out = self._call(client, "solve", dict(params, hydrogens="none", map=True), files)
        if not header.get("solved"):
            self._say("AI solve: not solved (%s); the model is unchanged" % "; ".join(header.get("warnings", [])),
                      "warning")
            return None
        res = next(v for k, v in out.items() if k.endswith(".res"))
        _, atoms = plan.parse_res(res.decode())
        olex.m("spy.create_history")
        self._new_atoms([(a["label"], a["xyz"]) for a in atoms])
        report = json.loads(out.get("report.json", b"{}") or b"{}")
        for line in plan.low_confidence(report.get("atoms", [])):
            olx.Echo("low confidence: " + line, m="warning")
        if "map.f32" in out and header.get("map"):
            self._show_map(header["map"]["dims"], out["map.f32"])
        return "%d atoms from the solution" % len(atoms)

    @staticmethod
    def _show_map(dims, data):
        """The solution's density as Olex2's map (olex_xgrid), levels in sigma units."""
        import array
        try:
            import olex_xgrid
        except ImportError:
            return
        values = array.array("f")
        values.frombytes(data)
        olex_xgrid.Import(dims, dims, data, False)
        olex_xgrid.SetMinMax(min(values), max(values))
        olex_xgrid.SetVisible(True)
        olex_xgrid.InitSurface(True)

    def _hydrogens(self, client, files, params):
        header, out = self._call(client, "add_hydrogens", params, files)
        res = next(v for k, v in out.items() if k.endswith(".res"))
        _, atoms = plan.parse_res(res.decode())
        placed = plan.placed_hydrogens(atoms)
        # water H (and OH on a metal) have no HAdd code: added where the server put them (direct
        # edits, undone by undo())
        self._new_atoms(placed)
        if placed:
            olx.Echo("%d H (water, OH on metals) added at the server's positions, not riding: restrain "
                     "or ride them (DFIX/AFIX 3) as you prefer" % len(placed), m="info")
        for afix, pivots in plan.hadd_commands(plan.hydrogen_groups(atoms)):
            # an explicit AFIX code makes HAdd put exactly the server's H count on each pivot
            self._macro("HAdd %d %s" % (afix, " ".join(pivots)))
        for w in header.get("warnings", []):
            olx.Echo("hydrogens: " + w, m="warning")


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def _r1():
    try:
        value = OV.GetParam("snum.refinement.last_R1")
        return float(value) if value not in (None, "", "n/a") else None
    except (TypeError, ValueError):
        return None


def _fmt(r1):
    return "n/a" if r1 is None else "%.4f" % r1


aisolve_plugin = AISolve()
