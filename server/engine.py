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
from aisolve.models.inference import configured_threads

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
        return {"typer": self.typer.name, "models": _model_versions(),
                "element_network": None if backend is None else {"backend": backend.name,
                                                                 "providers": list(backend.providers)},
                "threads": configured_threads(),  # OMP_NUM_THREADS: a local worker's share of the cores
                "device": "cuda" if backend is not None and any("CUDA" in p or p == "cuda"
                                                                for p in backend.providers) else "cpu"}

    def run(self, method: str, params: dict, attachments: dict[str, bytes], progress: Progress):
        """(result fields, result attachments) of a job; JobError for a job that cannot be done."""
        handler = {"solve": self.solve, "phase": self.phase, "assign_elements": self.assign_elements,
                   "add_hydrogens": self.add_hydrogens}.get(method)
        if handler is None:
            raise JobError("unknown_method", f"method {method!r} is not one a worker runs")
        if not attachments:
            raise JobError("bad_input", f"{method} needs the model (.ins/.res/.cif) and reflection files "
                                        "as attachments")
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
                return handler(params, paths, folder, progress)
            except InputError as exc:
                # name the file as the client knows it, not the temporary path
                raise JobError("bad_input", str(exc).replace(str(folder) + "/", "")) from None

    @staticmethod
    def _inputs(params: dict, paths: list[str], keep_model: bool = False):
        from aisolve.core.solve_inputs import load_solve_inputs
        return load_solve_inputs(paths, cell=params.get("cell"), spacegroup=params.get("spacegroup"),
                                 formula=params.get("formula"), z=params.get("z"), wavelength=params.get("wavelength"),
                                 keep_model=keep_model)

    def solve(self, params: dict, paths: list[str], folder: Path, progress: Progress):
        from aisolve.core.outputs import write_outputs
        from aisolve.core.pipeline import SolveOptions, solve
        from aisolve.core.start_model import StartingModelPhaser, read_start_model
        from aisolve.server.cli import make_h_counter, make_phaser
        start = _take_attachment(params.get("start_model"), paths)
        inputs = self._inputs(params, paths)
        route = _phaser_route(params)
        phaser = (StartingModelPhaser(read_start_model(start, inputs.template.cell)) if start
                  else make_phaser(route, int(params.get("seed", 0))))
        cycles = params.get("refine_cycles", 10)
        if not isinstance(cycles, int) or not 1 <= cycles <= 200:
            raise JobError("bad_input", f"refine_cycles must be an integer from 1 to 200, not {cycles!r}")
        options = SolveOptions(hydrogens=params.get("hydrogens", "auto"),
                               use_formula=not params.get("no_formula", False), d_min=params.get("d_min"),
                               phasing_time=float(params.get("phasing_time", 60)), seed=int(params.get("seed", 0)),
                               typer=self._typer(params.get("typer")), phaser=phaser, refine_cycles=cycles,
                               h_counter=make_h_counter(params.get("hydrogens", "auto")))
        result = solve(inputs.template, inputs.reflections, options, progress)
        written = write_outputs(result, folder / "out", inputs.stem,
                                inputs={"files": sorted(Path(p).name for p in paths)},
                                options={"typer": options.typer.name, "hydrogens": options.hydrogens,
                                         "use_formula": options.use_formula, "served": True,
                                         "phaser": phaser.name if phaser else "charge_flipping",
                                         "refine_cycles": cycles},
                                protected=set(), hkl_text=inputs.hkl_text)
        files = {p.name: p.read_bytes() for p in written.values()}
        f = result.figures
        fields = {"solved": result.solved, "formula": result.structure.formula(),
                  "r1": f.r1 if f else None, "wr2": f.wr2 if f else None, "goof": f.goof if f else None,
                  "warnings": result.warnings}
        if params.get("map") and result.f_calc is not None:
            dims, grid = _density_grid(result.data.f_obs, result.f_calc)
            fields["map"] = {"dims": dims, "dtype": "float32", "order": "C", "units": "sigma",
                             "coefficients": "Fobs, phases of the final model"}
            files["map.f32"] = grid
        return fields, files

    def phase(self, params: dict, paths: list[str], folder: Path, progress: Progress):
        """Phases of the data as an .fcf (LIST 6) and the highest map peaks: charge flipping, the
        neural phaser, or auto (the network where it applies, else charge flipping)."""
        from aisolve.core.data_prep import prepare
        from aisolve.core.fcf import fcf_text_from_arrays
        from aisolve.core.peaks import fourier_peaks
        from aisolve.core.phasing import ChargeFlippingPhaser, run_phaser
        from aisolve.server.cli import make_phaser
        route = _phaser_route(params)
        inputs = self._inputs(params, paths)
        st = inputs.template
        data = prepare(inputs.reflections, st.symmetry, st.cell_contents or {"C": 1.0}, params.get("d_min"))
        seed, budget = int(params.get("seed", 0)), float(params.get("phasing_time", 60))
        phaser = make_phaser(route, seed) or ChargeFlippingPhaser(seed=seed)
        phasing, _ = run_phaser(phaser, data, st.symmetry, budget, seed, progress)
        if not phasing.solved:
            return {"solved": False, "route": phasing.route, "notes": phasing.notes}, {}
        text = fcf_text_from_arrays(inputs.stem, st.cell, st.space_group, data.fo_sq, phasing.f_calc)
        peaks = fourier_peaks(phasing.f_calc, max_peaks=int(params.get("max_peaks", 60)))
        return ({"solved": True, "route": phasing.route, "figure_of_merit": phasing.figure_of_merit,
                 "notes": phasing.notes,
                 "peaks": [{"xyz": list(p.xyz), "height": p.height} for p in peaks]},
                {f"{inputs.stem}_phases.fcf": text.encode()})

    def assign_elements(self, params: dict, paths: list[str], folder: Path, progress: Progress):
        """Elements (with probabilities) for the model's non-H atoms and Q-peaks, by their labels."""
        from aisolve.core.contents import contents_in_use
        from aisolve.core.pipeline import assign_elements
        inputs = self._inputs(params, paths, keep_model=True)
        problem = contents_in_use(inputs.template, not params.get("no_formula", False)).problem
        progress(0.1, "assigning elements")
        typed = assign_elements(inputs.template, inputs.reflections, self._typer(params.get("typer")),
                                use_formula=not params.get("no_formula", False),
                                complete=bool(params.get("complete", False)))
        rows = []
        for label, atom in typed:
            if atom is None:
                rows.append({"label": label, "element": None, "note": "no atom"})
                continue
            probs = sorted((atom.element_probabilities or {atom.element: 1.0}).items(), key=lambda kv: -kv[1])
            rows.append({"label": label, "element": atom.element, "confidence": atom.confidence,
                         "probabilities": dict(probs[:4]), "xyz": list(atom.xyz),
                         **({"note": "missing atom, from the difference map"} if label is None else {})})
        progress(1.0, "done")
        return {"assignments": rows, "warnings": [problem] if problem else []}, {}

    def add_hydrogens(self, params: dict, paths: list[str], folder: Path, progress: Progress):
        """Riding hydrogens on the model, refined; the model back as a .res with AFIX blocks."""
        from aisolve.core.pipeline import add_hydrogens
        from aisolve.core.shelx_write import write_ins_text
        inputs = self._inputs(params, paths, keep_model=True)
        progress(0.1, "placing riding hydrogens")
        from aisolve.server.cli import make_h_counter
        model, figures, warnings = add_hydrogens(inputs.template, inputs.reflections,
                                                 make_h_counter(params.get("hydrogens", "auto")))
        progress(1.0, "done")
        return ({"r1": figures.r1, "n_hydrogens": len(model.hydrogens()), "warnings": warnings},
                {f"{inputs.stem}_h.res": write_ins_text(model).encode()})

    def _typer(self, choice):
        if not choice or choice == self.typer_choice:
            return self.typer
        from aisolve.server.cli import make_typer
        return make_typer(choice)


def _take_attachment(name, paths: list[str]) -> str | None:
    """The path of the attachment a parameter names (e.g. the starting model), taken out of `paths`."""
    if not name:
        return None
    found = [p for p in paths if Path(p).name == name]
    if not found:
        raise JobError("bad_input", f"no attachment named {name!r} was sent")
    paths.remove(found[0])
    return found[0]


def _density_grid(f_obs, f_calc) -> tuple[list[int], bytes]:
    """The unit cell's electron density (Fobs with the model's phases, sigma units) on a grid."""
    import numpy as np

    from aisolve.core.peaks import model_phased, sigma_scaled_map
    grid = sigma_scaled_map(model_phased(f_obs, f_calc)).real_map_unpadded().as_numpy_array().astype(np.float32)
    return list(grid.shape), np.ascontiguousarray(grid).tobytes()


def _phaser_route(params: dict) -> str:
    route = params.get("phaser", "auto")
    if route not in ("auto", "neural", "flip"):
        raise JobError("bad_input", f"phaser must be 'auto', 'neural' or 'flip', not {route!r}")
    return route


def _model_versions() -> dict:
    """Shipped weights: file, sha256 prefix and the training step of each (from its model card)."""
    import hashlib

    from aisolve.models.element_typer import ONNX_FILE, WEIGHTS_DIR
    out = {}
    onnx = WEIGHTS_DIR / ONNX_FILE
    if onnx.exists():
        card_path = WEIGHTS_DIR / "element_net.card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        out["element_net"] = {"file": onnx.name, "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()[:12],
                              "best_step": card.get("training", {}).get("best_step")}
    return out
