"""Server benchmark: many concurrent clients, latency, throughput by worker count, overhead versus embedded.

    python bench/server.py [--clients 100] [--requests 10] [--workers 1 2 4] [--json out.json]

Each configuration starts a real `aisolve serve` on loopback. Checks: every reply arrives, once,
to the client that asked (ping echoes a per-request token). Latencies are per request, from
send to final reply; p50/p99 over all requests. `assign_elements` (the sucrose model with its
Q-peaks and reflections, the baseline typer) is the small job; the solve overhead compares the
same sucrose solve embedded and through a 1-worker server (medians of --repeats runs each).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import aisolve.core  # noqa: F401  (cctbx before pyzmq is used: the other order crashed in boost_adaptbx)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sucrose"


def _percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _serve(port: int, workers: int):
    proc = subprocess.Popen([sys.executable, "-m", "aisolve.server.cli", "serve", "--bind", f"tcp://127.0.0.1:{port}",
                             "--workers", str(workers), "--typer", "baseline", "--max-queue", "10000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from aisolve.server.client import Client
    with Client(f"tcp://127.0.0.1:{port}", reply_timeout=30) as c:
        while sum(w["ready"] for w in c.status()["workers"]) < workers:
            time.sleep(0.2)
    return proc


def _hammer(url: str, clients: int, requests: int, method: str, params, files) -> dict:
    from aisolve.server.client import Client
    lat, errors, wrong = [], [], []
    lock = threading.Lock()

    def one(k: int):
        with Client(url, reply_timeout=600, silence_timeout=600) as c:
            for r in range(requests):
                token = f"{k}-{r}"
                t = time.perf_counter()
                try:
                    header, _ = c.call(method, dict(params, echo=token), files)
                    ok = header.get("echo") == token if method == "ping" else bool(header.get("assignments"))
                except Exception as exc:  # noqa: BLE001 - counted, reported
                    with lock:
                        errors.append(repr(exc))
                    continue
                with lock:
                    lat.append(time.perf_counter() - t)
                    if not ok:
                        wrong.append(token)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"requests": clients * requests, "answered": len(lat), "errors": len(errors), "mixed_up": len(wrong),
            "p50_ms": 1000 * _percentile(lat, 0.5) if lat else None,
            "p99_ms": 1000 * _percentile(lat, 0.99) if lat else None,
            "throughput_per_s": len(lat) / wall, "first_error": errors[0] if errors else None}


def _solve_overhead(port: int, repeats: int) -> dict:
    from aisolve.core.loaders import load_reflections, load_structure
    from aisolve.core.pipeline import SolveOptions, solve
    from aisolve.core.typing_baseline import BaselineTyper
    from aisolve.server.client import Client
    embedded, served = [], []
    files = {p.name: p.read_bytes() for p in (EXAMPLE / "sucrose.ins", EXAMPLE / "sucrose.hkl")}
    for _ in range(repeats):
        t = time.perf_counter()
        solve(load_structure(EXAMPLE / "sucrose.ins"), load_reflections(EXAMPLE / "sucrose.hkl"),
              SolveOptions(typer=BaselineTyper()))
        embedded.append(time.perf_counter() - t)
        with Client(f"tcp://127.0.0.1:{port}", reply_timeout=60) as c:
            t = time.perf_counter()
            c.call("solve", {"typer": "baseline"}, files)
            served.append(time.perf_counter() - t)
    e, s = statistics.median(embedded), statistics.median(served)
    return {"embedded_s": e, "server_s": s, "overhead_percent": 100 * (s - e) / e}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--job-clients", type=int, default=10, help="clients for the assign_elements runs")
    ap.add_argument("--job-requests", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    model = b"\n".join(ln for ln in (EXAMPLE / "reference" / "sucrose.res").read_bytes().splitlines()
                       if not ln.upper().startswith((b"H", b"AFIX")) or ln.upper().startswith(b"HKLF"))
    files = {"sucrose.res": model, "sucrose.hkl": (EXAMPLE / "sucrose.hkl").read_bytes()}
    out = {}
    port = 5900
    for n in a.workers:
        proc = _serve(port, n)
        try:
            url = f"tcp://127.0.0.1:{port}"
            out[f"ping, {n} workers"] = _hammer(url, a.clients, a.requests, "ping", {}, None)
            out[f"assign_elements, {n} workers"] = _hammer(url, a.job_clients, a.job_requests, "assign_elements",
                                                           {"typer": "baseline"}, files)
            if n == 1:
                out["solve overhead, 1 worker"] = _solve_overhead(port, a.repeats)
        finally:
            proc.terminate()
            proc.wait(60)
        for k, v in out.items():
            if k.endswith(f"{n} workers") or k.endswith(f"{n} worker"):
                print(k, json.dumps({x: round(y, 2) if isinstance(y, float) else y for x, y in v.items()}), flush=True)
        port += 10
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
