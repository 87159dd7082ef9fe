"""A worker: connects to the server's back end as a DEALER, loads the models once, runs one job at a time.

    python -m aisolve.server.worker --connect tcp://127.0.0.1:5556 [--server-key KEY --keys DIR]

Local workers are started by `aisolve serve`; more hosts (GPU nodes of a lab) start this command
pointing at the server's back end. Frames to the server: a JSON header (type ready, heartbeat,
progress, result or error) and attachments, as in docs/PROTOCOL.md. A second socket sends
heartbeats every HEARTBEAT seconds while a job keeps the main thread busy.
"""
from __future__ import annotations

import argparse
import os
import socket
import threading
import time
import traceback
import uuid

import aisolve.core  # noqa: F401  (cctbx before pyzmq is used: the other order can crash in boost_adaptbx)
import zmq  # noqa: E402

from aisolve.server import protocol

HEARTBEAT = 2.0  # s


def _heartbeats(ctx: zmq.Context, endpoint: str, worker_id: str, stop: threading.Event, curve: dict) -> None:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt_string(zmq.IDENTITY, worker_id + ".hb")
    sock.setsockopt(zmq.LINGER, 0)
    _apply_curve(sock, curve)
    sock.connect(endpoint)
    while not stop.wait(HEARTBEAT):
        sock.send_multipart(protocol.encode({"type": "heartbeat", "worker": worker_id}))
    sock.close()


def _apply_curve(sock, curve: dict) -> None:
    if curve:
        sock.curve_publickey = curve["public"]
        sock.curve_secretkey = curve["secret"]
        sock.curve_serverkey = curve["server"]


def run_worker(endpoint: str, typer: str = "auto", curve: dict | None = None, worker_id: str | None = None) -> None:
    from aisolve.server.engine import Engine, JobError
    worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    engine = Engine(typer=typer)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt_string(zmq.IDENTITY, worker_id)
    sock.setsockopt(zmq.LINGER, 2000)
    _apply_curve(sock, curve or {})
    sock.connect(endpoint)
    stop = threading.Event()
    threading.Thread(target=_heartbeats, args=(ctx, endpoint, worker_id, stop, curve or {}), daemon=True).start()
    sock.send_multipart(protocol.encode({"type": "ready", "worker": worker_id, "info": engine.info(),
                                         "pid": os.getpid()}))
    try:
        while True:
            frames = sock.recv_multipart()
            header, attachments = protocol.decode(frames, max_size=1 << 34)
            if header.get("type") == "shutdown":
                break
            rid, method, params = header["id"], header["method"], header.get("params", {})
            last = [0.0]

            def progress(fraction: float, message: str, rid=rid, last=last) -> None:
                now = time.monotonic()
                if now - last[0] > 0.2 or fraction >= 1.0:  # throttled: a bar, not a flood
                    last[0] = now
                    sock.send_multipart(protocol.encode({"type": "progress", "id": rid,
                                                         "fraction": round(float(fraction), 4), "message": message}))
            try:
                fields, files = engine.run(method, params, attachments, progress)
                sock.send_multipart(protocol.encode({"type": "result", "id": rid, **fields}, files))
            except JobError as exc:
                sock.send_multipart(protocol.encode({"type": "error", "id": rid, "code": exc.code,
                                                     "message": exc.message}))
            except Exception as exc:  # noqa: BLE001 - a job's bug is that job's error, the worker lives on
                sock.send_multipart(protocol.encode({"type": "error", "id": rid, "code": "internal",
                                                     "message": f"{type(exc).__name__}: {exc}",
                                                     "traceback": traceback.format_exc(limit=4)}))
    finally:
        stop.set()
        sock.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connect", required=True, help="the server's back-end endpoint")
    p.add_argument("--typer", default="auto")
    p.add_argument("--id", help="worker identity (default: host-pid-random)")
    p.add_argument("--server-key", help="the back end's public key file (CurveZMQ), where the back end is secured")
    p.add_argument("--keys", help="folder with this worker's key pair (NAME.key_secret)")
    p.add_argument("--key-name", default="worker", help="NAME of the key pair (default: worker)")
    a = p.parse_args(argv)
    curve = None
    if a.server_key:
        from aisolve.server.keys import load_public, load_secret
        public, secret = load_secret(a.keys, a.key_name)
        curve = {"public": public, "secret": secret, "server": load_public(a.server_key)}
    run_worker(a.connect, a.typer, curve, a.id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
