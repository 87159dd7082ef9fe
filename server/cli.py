"""The `aisolve` command line."""
from __future__ import annotations

import argparse
import json
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _format_info(info: dict) -> str:
    lines = [info["file"]]
    m = info.get("model")
    if m:
        cell = " ".join(f"{x:g}" for x in m["cell"])
        sg = m["space_group"] + (f" (No. {m['space_group_number']})" if "space_group_number" in m else "")
        lines.append(f"  space group  {sg}")
        lines.append(f"  cell         {cell}" + (f"   wavelength {m['wavelength']:g} A" if "wavelength" in m else ""))
        if m.get("cell_contents"):
            lines.append(f"  contents     {m['cell_contents']} (unit cell)")
        if m.get("model_formula_asu"):
            lines.append(f"  model        {m['model_formula_asu']} (asymmetric unit)")
        if "n_atoms" in m:
            lines.append(f"  atoms        {m['n_atoms']} ({m['n_non_h']} non-H, {m['n_h']} H), "
                         f"{m['n_q_peaks']} Q-peaks")
    if info.get("cell_from"):
        lines.append(f"  cell from    {info['cell_from']}")
    r = info.get("reflections")
    if r:
        src = info.get("reflections_file")
        lines.append(f"  reflections  {r['n_reflections']} measured" + (f" in {src}" if src else ""))
        if "d_min" in r:
            ratio_key = "mean_i_over_sigma" if "mean_i_over_sigma" in r else "mean_f_over_sigma"
            ratio = r[ratio_key]
            label = "<I/sigma>" if ratio_key == "mean_i_over_sigma" else "<F/sigma>"
            lines.append(f"  unique       {r['n_unique']}, d_min {r['d_min']:.3f} A, "
                         f"completeness {100 * r['completeness']:.1f} %, {label} "
                         + ("n/a" if ratio is None else f"{ratio:.2f}"))
            for a in r.get("systematic_absences", []):
                lines.append(f"  absences     {a['zone']}: {a['count']} reflections, <I/sigma> {a['mean_i_over_sigma']:.2f}")
        else:
            h = r["index_range"]
            lines.append(f"  index range  h {h[0][0]}..{h[0][1]}, k {h[1][0]}..{h[1][1]}, l {h[2][0]}..{h[2][1]}")
            if r.get("mean_i_over_sigma") is not None:
                lines.append(f"  <I/sigma>    {r['mean_i_over_sigma']:.2f}")
    for w in (m or {}).get("warnings", []) + (r or {}).get("warnings", []):
        lines.append(f"  warning      {w}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from aisolve.core.info import file_info
    infos = [file_info(p) for p in args.files]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=1))
    else:
        print("\n\n".join(_format_info(i) for i in infos))
    return EXIT_OK


def make_typer(choice: str):
    """'network' (the element network with the refinement's electron counts), 'network-only',
    'baseline', or 'auto': the network when its weights are installed and it is the measured
    better typer (NETWORK_IS_DEFAULT), else the baseline."""
    from aisolve.core.typing_baseline import BaselineTyper
    if choice == "baseline":
        return BaselineTyper()
    from aisolve.models.element_typer import NETWORK_IS_DEFAULT, NetworkTyper, weights_present
    if choice in ("network", "network-only") or (weights_present() and NETWORK_IS_DEFAULT):
        return NetworkTyper(use_electron_counts=choice != "network-only")
    return BaselineTyper()


def make_h_counter(choice: str):
    """H counts per atom: 'network' (the hydrogen network), 'geometry' / 'none' (None: the pipeline's
    geometry rules, or no H), or 'auto': the network when its weights are installed and it is the
    measured better choice (hydrogen_typer.NETWORK_IS_DEFAULT), else the geometry rules."""
    if choice in ("geometry", "none"):
        return None
    from aisolve.models.hydrogen_typer import NETWORK_IS_DEFAULT, NetworkHydrogens, weights_present
    if choice == "network" or (weights_present() and NETWORK_IS_DEFAULT):
        return NetworkHydrogens()
    return None


def make_phaser(choice: str, seed: int = 0):
    """'flip' (None: the pipeline's charge flipping), 'neural' (the neural phaser; P2_1/c only), or
    'auto': the neural phaser where it applies, charge flipping when it does not or when its best
    candidate refines poorly (and always when its weights are not installed)."""
    if choice == "flip":
        return None
    from aisolve.models.neural_phaser import NeuralPhaser, weights_present
    if choice == "neural":
        return NeuralPhaser(seed=seed)
    return NeuralPhaser(seed=seed, falls_back_to_flipping=True) if weights_present() else None


def cmd_solve(args: argparse.Namespace) -> int:
    if args.server:
        return _solve_on_server(args)
    from pathlib import Path

    from aisolve.core.outputs import write_outputs
    from aisolve.core.pipeline import SolveOptions, solve
    from aisolve.core.solve_inputs import load_solve_inputs
    from aisolve.server.progress import ProgressBar

    inputs = load_solve_inputs(args.files, cell=args.cell, spacegroup=args.spacegroup, formula=args.formula,
                               z=args.z, wavelength=args.wavelength)
    typer = make_typer(args.typer)
    if args.start_model:
        from aisolve.core.start_model import StartingModelPhaser, read_start_model
        phaser = StartingModelPhaser(read_start_model(args.start_model, inputs.template.cell))
    else:
        phaser = make_phaser(args.phaser, args.seed)
    h_counter = make_h_counter(args.hydrogens)
    options = SolveOptions(hydrogens=args.hydrogens, use_formula=not args.no_formula, d_min=args.d_min,
                           phasing_time=args.phasing_time, seed=args.seed, typer=typer, phaser=phaser,
                           refine_cycles=args.refine_cycles, h_counter=h_counter)
    progress = ProgressBar(enabled=not args.quiet)
    result = solve(inputs.template, inputs.reflections, options, progress)
    outdir = Path(args.output or (inputs.files[0].parent / f"{inputs.stem}_aisolve"))
    written = write_outputs(
        result, outdir, inputs.stem,
        inputs={"files": [str(p) for p in inputs.files], "start_model": args.start_model},
        options={"hydrogens": options.hydrogens, "h_counts": h_counter.name if h_counter else "geometry",
                 "use_formula": options.use_formula, "d_min": options.d_min,
                 "phasing_time": options.phasing_time, "seed": options.seed,
                 "phaser": phaser.name if phaser else "charge_flipping", "phaser_requested": args.phaser,
                 "typer": typer.name,
                 "refine_cycles": options.refine_cycles},
        protected={p.resolve() for p in inputs.files} | ({Path(args.start_model).resolve()} if args.start_model
                                                          else set()),
        hkl_text=inputs.hkl_text)
    f = result.figures
    status = "solved" if result.solved else "NOT SOLVED"
    summary = f"{status}: {result.structure.formula() or ''}".rstrip()
    if f is not None:
        summary += (f"  R1 {f.r1:.4f} (Fo>4sig)  wR2 {f.wr2:.4f}  GooF {f.goof:.3f}  "
                    f"{len(result.structure.non_h_atoms())} non-H + {len(result.structure.hydrogens())} H atoms")
    print(summary)
    for w in result.warnings:
        print(f"warning: {w}")
    for kind, path in written.items():
        print(f"wrote {path}")
    return EXIT_OK if result.solved else EXIT_FAILED


def cmd_data_generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from aisolve.core.errors import InputError
    from aisolve.models.data.generate import GenConfig, generate
    from aisolve.server.progress import ProgressBar

    cif_dir = args.cif_dir
    if cif_dir and not (Path(cif_dir) / "MANIFEST.tsv").is_file():
        raise InputError(cif_dir, "not a training-cifs folder (no MANIFEST.tsv)")
    cfg = GenConfig(n=args.n, seed=args.seed, cif_dir=cif_dir, shard_size=args.shard_size,
                    weights={"cif": args.cif_weight, "smiles": 1.0 - args.cif_weight})
    manifest = generate(cfg, args.output, jobs=args.jobs, progress=ProgressBar(enabled=not args.quiet))
    print((Path(args.output) / "stats.md").read_text())
    print(f"wrote {manifest['n_graphs']} graphs in {len(manifest['shards'])} shards to {args.output}")
    return EXIT_OK


def cmd_data_stats(args: argparse.Namespace) -> int:
    from collections import Counter
    from pathlib import Path

    from aisolve.core.errors import InputError
    from aisolve.models.data.shards import read_shard, statistics, statistics_markdown

    graphs = []
    for folder in map(Path, args.folders):
        shards = sorted(folder.glob("shard_*.npz"))
        if not shards:
            raise InputError(folder, "no shard_*.npz files here")
        graphs += [g for s in shards for g in read_shard(s)]
    from aisolve.models.data.generate import split_of
    for g in graphs:  # as the training loader splits them: one split seed for pooled sets
        g.meta["split"] = split_of(g.meta["compound"], 0)
    print(statistics_markdown(statistics(graphs, Counter())))
    return EXIT_OK


def _solve_on_server(args: argparse.Namespace) -> int:
    """The same job through a server: files sent as attachments, outputs written locally."""
    from pathlib import Path

    from aisolve.core.outputs import safe_write_bytes
    from aisolve.server.client import Client, ServerError
    from aisolve.server.progress import ProgressBar
    files = [Path(f) for f in args.files]
    for f in files:
        if not f.is_file():
            print(f"aisolve: error: {f}: no such file", file=sys.stderr)
            return EXIT_BAD_INPUT
    params = {k: v for k, v in {"cell": args.cell, "spacegroup": args.spacegroup, "formula": args.formula,
                                "z": args.z, "wavelength": args.wavelength, "no_formula": args.no_formula,
                                "d_min": args.d_min, "hydrogens": args.hydrogens, "typer": args.typer,
                                "phasing_time": args.phasing_time, "seed": args.seed,
                                "refine_cycles": args.refine_cycles, "phaser": args.phaser}.items() if v is not None}
    attachments = {f.name: f.read_bytes() for f in files}
    if args.start_model:
        start = Path(args.start_model)
        if not start.is_file():
            print(f"aisolve: error: {start}: no such file", file=sys.stderr)
            return EXIT_BAD_INPUT
        from aisolve.server.protocol import attach_start_model
        attach_start_model(params, attachments, start.name, start.read_bytes())
    server_key = client_keys = None
    if args.server_key:
        from aisolve.server.keys import load_public, load_secret
        server_key = load_public(args.server_key)
        client_keys = load_secret(args.keys, "client")
    progress = ProgressBar(enabled=not args.quiet)
    try:
        with Client(args.server, server_key=server_key, client_keys=client_keys) as client:
            header, outputs = client.call("solve", params, attachments, progress=progress)
    except ServerError as exc:
        print(f"aisolve: error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.code == "bad_input" else EXIT_INTERNAL
    outdir = Path(args.output or (files[0].parent / f"{files[0].stem}_aisolve"))
    outdir.mkdir(parents=True, exist_ok=True)
    protected = {f.resolve() for f in files}
    for name, data in outputs.items():
        print(f"wrote {safe_write_bytes(outdir / Path(name).name, data, protected)}")
    r1 = header.get("r1")
    print(("solved" if header.get("solved") else "NOT SOLVED") + f": {header.get('formula') or ''}"
          + (f"  R1 {r1:.4f}" if r1 is not None else ""))
    for w in header.get("warnings", []):
        print(f"warning: {w}")
    return EXIT_OK if header.get("solved") else EXIT_FAILED


def cmd_serve(args: argparse.Namespace) -> int:
    from aisolve.server.server import Server, ServerConfig
    host_port = args.bind.rsplit(":", 1)
    backend = args.backend or f"{host_port[0]}:{int(host_port[1]) + 1}"
    cfg = ServerConfig(frontend=args.bind, backend=backend, workers=args.workers, max_queue=args.max_queue,
                       job_timeout=args.job_timeout, max_message=int(args.max_message_mb * 1024 * 1024),
                       typer=args.typer, keys=args.keys, allow=args.allow)
    if cfg.keys is None and not any(h in args.bind for h in ("127.0.0.1", "localhost", "ipc://")):
        print("aisolve: error: a server reachable from other hosts needs CurveZMQ keys (--keys and --allow)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    Server(cfg, log=lambda m: print(m, flush=True)).serve_forever()
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from aisolve.server.keys import allow, create
    if args.allow_key:
        print(f"allowed {allow(args.folder, args.allow_key)}")
        return EXIT_OK
    public, secret = create(args.folder, args.name)
    print(f"wrote {public} (public: give it out) and {secret} (secret: keep it private)")
    return EXIT_OK


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 200:
        raise argparse.ArgumentTypeError(f"{text}: give 1 to 200")
    return value


def _run_installer(module_name: str, folder: str, remove: bool) -> int:
    """Install (or remove) a host integration (Olex2 plugin, CCP4i2 task) into the host's folder."""
    import importlib
    module = importlib.import_module(f"aisolve.server.{module_name}")
    try:
        lines = module.uninstall(folder) if remove else module.install(folder)
    except module.InstallError as exc:
        print(f"aisolve: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(lines))
    return EXIT_OK


def cmd_install_olex2(args: argparse.Namespace) -> int:
    return _run_installer("olex2_install", args.olex2_dir, args.uninstall)


def cmd_install_ccp4i2(args: argparse.Namespace) -> int:
    return _run_installer("ccp4i2_install", args.ccp4i2_dir, args.uninstall)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aisolve", description="AI structure solution for small-molecule crystallography")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for internal errors")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="cell, symmetry, contents and reflection figures of files")
    info.add_argument("files", nargs="+", help=".ins/.res, .hkl (with its .ins/.res beside it), .cif[#block], .mtz")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    sv = sub.add_parser("solve", help="solve and refine a structure: writes X.res, X.cif, X.fcf, report.json")
    sv.add_argument("files", nargs="+", help="X.ins X.hkl | X.cif (embedded hkl/res) | X.mtz (with --formula)")
    sv.add_argument("-o", "--output", help="output folder (default: <stem>_aisolve beside the input)")
    sv.add_argument("--cell", nargs=6, type=float, metavar=("A", "B", "C", "ALPHA", "BETA", "GAMMA"))
    sv.add_argument("--spacegroup", help="space-group symbol, e.g. 'P 21/c'")
    sv.add_argument("--formula", help="formula per formula unit, e.g. 'C12 H22 O11' (with --z)")
    sv.add_argument("--z", type=float, help="formula units per cell (default: the space-group order)")
    sv.add_argument("--wavelength", type=float)
    sv.add_argument("--no-formula", action="store_true", help="ignore the cell contents (type from density alone)")
    sv.add_argument("--d-min", type=float, help="resolution cut-off in A")
    sv.add_argument("--hydrogens", choices=("auto", "geometry", "network", "none"), default="auto",
                    help="riding H counts: the hydrogen network, the geometry rules, or none (auto: the "
                         "network once it beats the rules on the real-data benchmark)")
    sv.add_argument("--typer", choices=("auto", "network", "network-only", "baseline"), default="auto",
                    help="element assignment: the element network combined with the refined electron counts, "
                         "the network alone, or the baseline (electron counts, cell contents, chemistry); "
                         "auto: the better measured one (the network with electron counts, when its weights are installed)")
    sv.add_argument("--phaser", choices=("auto", "neural", "flip"), default="auto",
                    help="phasing: the neural phaser (P2_1/c, cells up to 12 A), charge flipping, or auto: the "
                         "network where it applies, charge flipping when it does not or refines poorly")
    sv.add_argument("--phasing-time", type=float, default=60.0, help="seconds for phasing trials")
    sv.add_argument("--start-model", help="an earlier or partial model (.res/.ins/.cif/mmCIF/.pdb): its phases "
                                          "replace charge flipping; it is completed, retyped and refined")
    sv.add_argument("--refine-cycles", type=_positive_int, default=10,
                    help="least-squares cycles of the final refinement (default 10)")
    sv.add_argument("--seed", type=int, default=0)
    sv.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sv.add_argument("--server", help="run on an aisolve server, e.g. tcp://127.0.0.1:5555 (default: embedded)")
    sv.add_argument("--server-key", help="the server's public key file (CurveZMQ)")
    sv.add_argument("--keys", help="folder with this client's key pair client.key/client.key_secret")
    sv.set_defaults(func=cmd_solve)

    se = sub.add_parser("serve", help="run the inference server (ZeroMQ) for plugins and lab clients")
    se.add_argument("--bind", default="tcp://127.0.0.1:5555", help="front end for clients (default: localhost only)")
    se.add_argument("--backend", help="back end for workers (default: the next port)")
    se.add_argument("--workers", type=int, default=1,
                    help="local worker processes (each runs cores / workers threads)")
    se.add_argument("--max-queue", type=int, default=64)
    se.add_argument("--job-timeout", type=float, default=900.0, help="seconds a job may run")
    se.add_argument("--max-message-mb", type=float, default=64.0)
    se.add_argument("--typer", choices=("auto", "network", "network-only", "baseline"), default="auto")
    se.add_argument("--keys", help="folder with server.key_secret (CurveZMQ; required off localhost)")
    se.add_argument("--allow", help="folder of allowed client public keys (*.key)")
    se.set_defaults(func=cmd_serve)

    ol = sub.add_parser("install-olex2", help="install (or --uninstall) the Olex2 plugin")
    ol.add_argument("--olex2-dir", required=True, help="the Olex2 installation folder")
    ol.add_argument("--uninstall", action="store_true")
    ol.set_defaults(func=cmd_install_olex2)

    ci = sub.add_parser("install-ccp4i2", help="install (or --uninstall) the CCP4i2 task (classic CCP4i2)")
    ci.add_argument("--ccp4i2-dir", required=True, help="the CCP4i2 folder (with wrappers/ and core/)")
    ci.add_argument("--uninstall", action="store_true")
    ci.set_defaults(func=cmd_install_ccp4i2)

    ks = sub.add_parser("keys", help="CurveZMQ key pairs for a server, its clients and workers")
    ks.add_argument("folder")
    ks.add_argument("--name", default="client", help="server, client, worker or any name")
    ks.add_argument("--allow-key", help="instead: copy this public key file into FOLDER (an allow-list)")
    ks.set_defaults(func=cmd_keys)

    data = sub.add_parser("data", help="training data: labelled peak graphs")
    dsub = data.add_subparsers(dest="data_command", required=True)
    gen = dsub.add_parser("generate", help="generate N labelled peak graphs into sharded files")
    gen.add_argument("-n", type=int, required=True)
    gen.add_argument("-o", "--output", required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--jobs", type=int, default=2)
    gen.add_argument("--cif-dir", help="training-cifs folder (real structures); without it only SMILES")
    gen.add_argument("--cif-weight", type=float, default=0.5, help="share of real structures")
    gen.add_argument("--shard-size", type=int, default=500)
    gen.add_argument("-q", "--quiet", action="store_true")
    gen.set_defaults(func=cmd_data_generate)
    st = dsub.add_parser("stats", help="statistics of a generated data set (several folders: pooled)")
    st.add_argument("folders", nargs="+")
    st.set_defaults(func=cmd_data_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so that `aisolve --help` stays fast and the package's cctbx guard runs first.
    from aisolve.core.errors import InputError
    try:
        return args.func(args)
    except InputError as exc:
        print(f"aisolve: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("aisolve: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, --debug gives the traceback
        if args.debug:
            raise
        print(f"aisolve: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
