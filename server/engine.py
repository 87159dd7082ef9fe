"""What a worker does with a job: the embedded engine behind the protocol's methods.

Attachments arrive as bytes under their file names (e.g. "sucrose.ins", "sucrose.hkl"); they are
written to a private temporary folder and read with the same loaders as the command line, so a
malformed file gets the same clear error (file, line, problem), returned as `bad_input`.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Callable

import aisolve.core  # noqa: F401  (cctbx first)
from aisolve.core.errors import InputError

Progress = Callable[[float, str], None]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
_MODEL_SUFFIXES = (".ins", ".res", ".cif", ".mtz")


class JobError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Engine:
    """Loads the models once; runs jobs."""

    def __init__(self, typer: str = "auto"):
        from aisolve.server.cli import make_typer
        self.typer_choice = typer
        self.typer = make_typer(typer)

    def info(self) -> dict:
        backend = getattr(getattr(self.typer, "predictor", None), "backend", None)
        return {"typer": self.typer.name,
                "element_network": None if backend is None else {"backend": backend.name,
                                                                 "providers": list(backend.providers)},
                "device": "cuda" if backend is not None and any("CUDA" in p or p == "cuda"
                                                                for p in backend.providers) else "cpu"}

    def run(self, method: str, params: dict, attachments: dict[str, bytes], progress: Progress):
        """(result fields, result attachments) of a job; JobError for a job that cannot be done."""
        if method == "solve":
            return self.solve(params, attachments, progress)
        raise JobError("unknown_method", f"method {method!r} is not available in this server version")

    def solve(self, params: dict, attachments: dict[str, bytes], progress: Progress):
        from aisolve.core.outputs import write_outputs
        from aisolve.core.pipeline import SolveOptions, solve
        from aisolve.core.solve_inputs import load_solve_inputs
        if not attachments:
            raise JobError("bad_input", "solve needs the model (.ins/.res/.cif) and reflection files as attachments")
        with tempfile.TemporaryDirectory(prefix="aisolve-job-") as tmp:
            folder = Path(tmp)
            paths = []
            for name, data in attachments.items():
                if not _SAFE_NAME.match(name):
                    raise JobError("bad_input", f"attachment name {name!r} is not a plain file name")
                (folder / name).write_bytes(data)
                paths.append(str(folder / name))
            # the model first, as on the command line
            paths.sort(key=lambda p: 0 if Path(p).suffix.lower() in _MODEL_SUFFIXES else 1)
            try:
                inputs = load_solve_inputs(paths, cell=params.get("cell"), spacegroup=params.get("spacegroup"),
                                           formula=params.get("formula"), z=params.get("z"),
                                           wavelength=params.get("wavelength"))
                options = SolveOptions(hydrogens=params.get("hydrogens", "geometry"),
                                       use_formula=not params.get("no_formula", False),
                                       d_min=params.get("d_min"), phasing_time=float(params.get("phasing_time", 60)),
                                       seed=int(params.get("seed", 0)), typer=self._typer(params.get("typer")))
                result = solve(inputs.template, inputs.reflections, options, progress)
            except InputError as exc:
                # name the file as the client knows it, not the temporary path
                raise JobError("bad_input", str(exc).replace(str(folder) + "/", "")) from None
            out = folder / "out"
            written = write_outputs(result, out, inputs.stem, inputs={"files": sorted(attachments)},
                                    options={"typer": options.typer.name, "hydrogens": options.hydrogens,
                                             "use_formula": options.use_formula, "served": True},
                                    protected=set(), hkl_text=inputs.hkl_text)
            files = {p.name: p.read_bytes() for p in written.values()}
        f = result.figures
        fields = {"solved": result.solved, "formula": result.structure.formula(),
                  "r1": f.r1 if f else None, "wr2": f.wr2 if f else None, "goof": f.goof if f else None,
                  "warnings": result.warnings}
        return fields, files

    def _typer(self, choice):
        if not choice or choice == self.typer_choice:
            return self.typer
        from aisolve.server.cli import make_typer
        return make_typer(choice)


def report_of(files: dict[str, bytes]) -> dict:
    return json.loads(files["report.json"]) if "report.json" in files else {}
