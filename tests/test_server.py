"""The server against real clients on loopback: protocol errors, jobs, retries, cancel, crashes, CurveZMQ."""
from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from aisolve.models.neural_phaser import weights_present as neural_weights_present
from aisolve.server import protocol
from aisolve.server.client import Client, ServerError, ServerUnavailable
from aisolve.server.server import Server, ServerConfig
from aisolve.server.threads import THREAD_VARIABLES, thread_share
from conftest import EXAMPLE, REPO

SUCROSE = {"sucrose.ins": (EXAMPLE / "sucrose.ins").read_bytes(), "sucrose.hkl": (EXAMPLE / "sucrose.hkl").read_bytes()}


class RunningServer:
    def __init__(self, port: int, **kw):
        self.url = f"tcp://127.0.0.1:{port}"
        self.cfg = ServerConfig(frontend=self.url, backend=f"tcp://127.0.0.1:{port + 1}", typer="baseline", **kw)
        self.server = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _run(self):
        self.server = Server(self.cfg, log=lambda m: None)
        self.ready.set()
        self.server.serve_forever(install_signals=False)

    def wait_for_workers(self, n: int, timeout: float = 60.0):
        with Client(self.url) as c:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if sum(w["ready"] for w in c.status()["workers"]) >= n:
                    return
                time.sleep(0.3)
        raise AssertionError("workers did not start")

    def stop(self):
        self.server.stop()
        self.thread.join(60)


@pytest.fixture(scope="module")
def server():
    s = RunningServer(5655, workers=1, max_message=2 * 1024 * 1024, job_timeout=120)
    s.wait_for_workers(1)
    yield s
    s.stop()


def _raw(url: str, frames: list[bytes], timeout_ms: int = 10000) -> tuple[dict, dict]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(url)
    sock.send_multipart(frames)
    assert sock.poll(timeout_ms), "no reply"
    header, files = protocol.decode(sock.recv_multipart())
    sock.close()
    return header, files


def test_protocol_round_trip_and_malformed_messages():
    rid, frames = protocol.request("solve", {"typer": "auto"}, {"a.hkl": b"1 2 3"})
    header, files = protocol.decode(frames)
    assert protocol.validate_request(header) == (rid, "solve", {"typer": "auto"}) and files == {"a.hkl": b"1 2 3"}
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode([b"\xff\xfe not json"])
    assert e.value.code == "bad_message"
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode(frames[:1])  # an attachment missing
    assert e.value.code == "bad_message" and "1 attachments" in e.value.message
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode(frames, max_size=10)
    assert e.value.code == "too_large"


def test_thin_client_is_python38_and_pyzmq_only():
    for name in ("client.py", "protocol.py"):
        tree = ast.parse((REPO / "server" / name).read_text(), feature_version=(3, 8))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
                   {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported <= {"__future__", "json", "uuid", "typing", "os", "time", "zmq", "aisolve"}, imported


def _python38_with_zmq():
    for cand in [os.environ.get("AISOLVE_PY38"), shutil.which("python3.8"),
                 str(Path.home() / ".pyenv/versions/3.8.18/bin/python")]:
        if cand and Path(cand).exists():
            ok = subprocess.run([cand, "-c", "import zmq"], capture_output=True).returncode == 0
            if ok:
                return cand
    return None


@pytest.mark.skipif(_python38_with_zmq() is None, reason="no Python 3.8 with pyzmq on this machine")
def test_thin_client_runs_on_python38(server, tmp_path):
    """Olex2's Python: the client package alone (no cctbx, numpy, torch) pings the server."""
    pkg = tmp_path / "aisolve" / "server"
    pkg.mkdir(parents=True)
    for name in ("__init__.py", "client.py", "protocol.py"):
        shutil.copy(REPO / "server" / name, pkg / name)
    code = ("import sys; from aisolve.server.client import Client; c = Client(sys.argv[1]); "
            "print(c.ping()['pong'], 'numpy' in sys.modules, 'cctbx' in sys.modules)")
    out = subprocess.run([_python38_with_zmq(), "-c", code, server.url], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert out.stdout.split() == ["True", "False", "False"], out.stderr


def test_ping_and_status(server):
    with Client(server.url) as c:
        assert c.ping()["pong"] is True
        st = c.status()
    assert st["protocol"] == protocol.PROTOCOL_VERSION and st["workers"][0]["device"] == "cpu"


def test_local_workers_share_the_cores(monkeypatch):
    """Two workers on the machine run one share of the threads each, not all the cores each."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    s = RunningServer(5725, workers=2)
    try:
        s.wait_for_workers(2)
        with Client(s.url) as c:
            workers = c.status()["workers"]
    finally:
        s.stop()
    assert [w["threads"] for w in workers] == [thread_share(2)] * 2


def test_garbage_wrong_version_and_unknown_method_get_clean_errors(server):
    header, _ = _raw(server.url, [b"\x00\x01garbage", b"more"])
    assert header["type"] == "error" and header["code"] == "bad_message"
    header, _ = _raw(server.url, [b'{"protocol": 99, "id": "x1", "method": "ping"}'])
    assert header["code"] == "unsupported_version" and header["id"] == "x1"
    _, frames = protocol.request("fly", {})
    header, _ = _raw(server.url, frames)
    assert header["code"] == "unknown_method"
    with Client(server.url) as c:  # the server is still fine
        assert c.ping()["pong"]


def test_oversized_payload_is_refused(server):
    with Client(server.url) as c, pytest.raises(ServerError) as e:
        c.call("solve", {}, {"big.hkl": b"0" * (3 * 1024 * 1024)})
    assert e.value.code == "too_large"


def test_malformed_hkl_gets_an_error_naming_file_and_line(server):
    bad = SUCROSE["sucrose.hkl"].splitlines(keepends=True)
    bad[4] = b"   1   2   x  12.00    1.00\n"
    with Client(server.url) as c, pytest.raises(ServerError) as e:
        c.call("solve", {}, {"sucrose.ins": SUCROSE["sucrose.ins"], "sucrose.hkl": b"".join(bad)})
    assert e.value.code == "bad_input"
    assert "sucrose.hkl" in e.value.message and "line 5" in e.value.message and "/tmp" not in e.value.message


def test_solve_streams_progress_and_a_retry_never_duplicates_the_job(server):
    seen = []
    with Client(server.url) as c:
        header, files = c.call("solve", {"hydrogens": "geometry"}, SUCROSE, progress=lambda f, m: seen.append(f),
                               request_id="job-sucrose-1")
        assert header["solved"] and header["r1"] < 0.06
        assert {"sucrose.res", "sucrose.cif", "sucrose.fcf", "report.json"} <= set(files)
        assert seen and max(seen) == 1.0
        t = time.monotonic()
        again, files2 = c.call("solve", {"hydrogens": "geometry"}, SUCROSE, request_id="job-sucrose-1")
        assert time.monotonic() - t < 2.0  # the stored result, not a second run
        assert again["r1"] == header["r1"] and files2 == files


def test_cancel_a_running_job(server):
    with Client(server.url) as c:
        rid, frames = protocol.request("solve", {"phasing_time": 60}, SUCROSE)
        c.sock.send_multipart(frames)
        time.sleep(1.0)
        with Client(server.url) as other:
            assert other.cancel(rid)["cancelled"] is True
        with pytest.raises(ServerError) as e:
            c.call("solve", {}, SUCROSE, request_id=rid)
        assert e.value.code == "cancelled"
    server.wait_for_workers(1)


def test_worker_killed_mid_job_fails_only_that_job(server):
    server.wait_for_workers(1)
    with Client(server.url) as c:
        pid = None
        rid, frames = protocol.request("solve", {}, SUCROSE)
        c.sock.send_multipart(frames)
        time.sleep(1.5)
        for w in server.server.workers.values():
            if w.job == rid:
                pid = w.process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ServerError) as e:
            c.call("solve", {}, SUCROSE, request_id=rid)
        assert e.value.code == "worker_crashed"
    server.wait_for_workers(1)
    with Client(server.url) as c:  # a replacement worker does the next job
        header, _ = c.call("solve", {"hydrogens": "none"}, SUCROSE)
        assert header["solved"]


def test_client_that_vanishes_mid_job_does_not_disturb_others(server):
    server.wait_for_workers(1)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.url)
    _, frames = protocol.request("solve", {"hydrogens": "none"}, SUCROSE)
    sock.send_multipart(frames)
    assert sock.poll(10000)
    sock.close()  # gone before the result
    with Client(server.url) as c:
        header, _ = c.call("solve", {"hydrogens": "none"}, SUCROSE)
        assert header["solved"]


def test_curve_server_refuses_unknown_clients(tmp_path):
    from aisolve.server.keys import allow, create, load_public, load_secret
    create(tmp_path / "server", "server")
    create(tmp_path / "alice", "client")
    create(tmp_path / "mallory", "client")
    allow(tmp_path / "allow", tmp_path / "alice" / "client.key")
    s = RunningServer(5675, workers=0, keys=str(tmp_path / "server"), allow=str(tmp_path / "allow"))
    try:
        server_key = load_public(tmp_path / "server" / "server.key")
        with Client(s.url, server_key=server_key, client_keys=load_secret(tmp_path / "alice", "client")) as c:
            assert c.ping()["pong"]
        with Client(s.url, server_key=server_key, client_keys=load_secret(tmp_path / "mallory", "client"),
                    reply_timeout=1.5, retries=1) as c, pytest.raises(ServerUnavailable):
            c.ping()
        with Client(s.url, reply_timeout=1.5, retries=1) as c, pytest.raises(ServerUnavailable):
            c.ping()  # no CurveZMQ at all
    finally:
        s.stop()


def test_cli_refuses_an_open_server_without_keys():
    out = subprocess.run([sys.executable, "-m", "aisolve.server.cli", "serve", "--bind", "tcp://0.0.0.0:5695"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "CurveZMQ" in out.stderr


def _reference_without_h() -> bytes:
    lines = (EXAMPLE / "reference" / "sucrose.res").read_text().splitlines()
    return "\n".join(ln for ln in lines if not ln.upper().startswith(("H", "AFIX")) or ln.upper().startswith("HKLF")).encode()


def test_assign_elements_and_add_hydrogens_on_the_current_model(server):
    """What the plugins send: the current model and the reflections."""
    from aisolve.core.shelx_ins import read_ins_text
    ref = read_ins_text((EXAMPLE / "reference" / "sucrose.res").read_text(), "reference")
    truth = {a.label: a.element for a in ref.non_h_atoms()}
    files = {"sucrose.res": _reference_without_h(), "sucrose.hkl": SUCROSE["sucrose.hkl"]}
    with Client(server.url) as c:
        header, _ = c.call("assign_elements", {}, files)
        got = {row["label"]: row["element"] for row in header["assignments"]}
        assert {k: got[k] for k in truth} == truth  # the file's Q-peaks get an answer too
        assert {k for k in got if k not in truth} == {f"Q{i}" for i in range(1, 11)}
        header, out = c.call("add_hydrogens", {}, files)
    model = read_ins_text(out["sucrose_h.res"].decode(), "sucrose_h.res")
    assert header["n_hydrogens"] == 22 == len(model.hydrogens())
    assert header["r1"] < 0.06 and any(a.afix for a in model.hydrogens())


def test_phase_returns_an_fcf_and_peaks(server):
    with Client(server.url) as c:
        header, out = c.call("phase", {"phasing_time": 30}, SUCROSE)
    assert header["solved"] and len(header["peaks"]) >= 23
    # sucrose is P2_1: 'auto' says why the neural phaser did not run, 'neural' refuses
    assert header["route"] == "charge_flipping"
    assert any("neural phaser not used" in n for n in header["notes"]) or not neural_weights_present()
    text = out["sucrose_phases.fcf"].decode()
    assert "_shelx_refln_list_code          6" in text and text.count("\n") > 1000
    with Client(server.url) as c:
        for phaser, words in (("bogus", "phaser must be"), ("neural", "P2_1/c")):
            if phaser == "neural" and not neural_weights_present():
                continue
            with pytest.raises(ServerError) as e:
                c.call("phase", {"phaser": phaser}, SUCROSE)
            assert e.value.code == "bad_input" and words in e.value.message


def test_time_limit_fails_the_job_and_replaces_the_worker(server):
    server.wait_for_workers(1)
    with Client(server.url) as c, pytest.raises(ServerError) as e:
        c.call("solve", {"timeout": 0.5}, SUCROSE)
    assert e.value.code == "timeout"
    server.wait_for_workers(1)
    with Client(server.url) as c:
        assert c.call("solve", {"hydrogens": "none"}, SUCROSE)[0]["solved"]


def test_scale_out_two_workers_connecting_to_the_back_end():
    """Workers started on their own (as on other hosts) share the jobs of one server."""
    s = RunningServer(5685, workers=0)
    procs = [subprocess.Popen([sys.executable, "-m", "aisolve.server.worker", "--connect", s.cfg.backend,
                               "--typer", "baseline"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    try:
        s.wait_for_workers(2)
        results = {}

        def run(k):
            with Client(s.url) as c:
                results[k] = c.call("solve", {"hydrogens": "none"}, SUCROSE)[0]

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert all(results[k]["solved"] for k in range(2))
        assert results[0]["worker"] != results[1]["worker"]
        with Client(s.url) as c:
            workers = c.status()["workers"]
        assert len(workers) == 2 and not any(w["local"] for w in workers)
    finally:
        s.stop()
        for p in procs:
            p.wait(30)


def test_sigterm_finishes_in_flight_work_then_exits():
    proc = subprocess.Popen([sys.executable, "-m", "aisolve.server.cli", "serve", "--bind", "tcp://127.0.0.1:5705",
                             "--typer", "baseline"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with Client("tcp://127.0.0.1:5705", reply_timeout=30) as c:
            while not any(w["ready"] for w in c.status()["workers"]):
                time.sleep(0.2)
            rid, frames = protocol.request("solve", {"hydrogens": "none"}, SUCROSE)
            c.sock.send_multipart(frames)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            header, _ = c.call("solve", {"hydrogens": "none"}, SUCROSE, request_id=rid)
            assert header["solved"]
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_secured_back_end_takes_only_allowed_workers(tmp_path):
    from aisolve.server.keys import allow, create, load_public, load_secret
    create(tmp_path / "server", "server")
    create(tmp_path / "alice", "client")
    create(tmp_path / "node", "worker")
    allow(tmp_path / "allow", tmp_path / "alice" / "client.key")
    s = RunningServer(5715, workers=1, keys=str(tmp_path / "server"), allow=str(tmp_path / "allow"),
                      secure_backend=True)
    stranger = subprocess.Popen([sys.executable, "-m", "aisolve.server.worker", "--connect", s.cfg.backend,
                                 "--typer", "baseline", "--server-key", str(tmp_path / "server" / "server.key"),
                                 "--keys", str(tmp_path / "node")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        keys = dict(server_key=load_public(tmp_path / "server" / "server.key"),
                    client_keys=load_secret(tmp_path / "alice", "client"))
        with Client(s.url, **keys) as c:
            end = time.monotonic() + 60
            while not any(w["ready"] for w in c.status()["workers"]) and time.monotonic() < end:
                time.sleep(0.3)
            time.sleep(2.0)  # time for the stranger to try
            workers = c.status()["workers"]
            assert [w["local"] for w in workers] == [True]  # the node's key is not allowed
            assert c.call("solve", {"hydrogens": "none"}, SUCROSE)[0]["solved"]
    finally:
        stranger.kill()
        s.stop()


def test_solve_from_a_starting_model_with_the_cycles_asked(server):
    partial = b"\n".join(ln for ln in _reference_without_h().splitlines()
                         if not ln.upper().startswith((b"O1 ", b"C5 ", b"C9 ")))
    params, attachments = {"refine_cycles": 3}, dict(SUCROSE)
    protocol.attach_start_model(params, attachments, "sucrose.res", partial)  # beside sucrose.ins: no clash
    assert params["start_model"] == "start_sucrose.res" and len(attachments) == 3
    with Client(server.url) as c:
        header, files = c.call("solve", params, attachments)
        report = json.loads(files["report.json"])
        assert header["solved"] and header["r1"] < 0.06
        assert report["phasing"]["route"] == "starting_model" and report["options"]["refine_cycles"] == 3
        assert len(report["atoms"]) == 23  # the three atoms left out are back
        for params, attached, words in (({"start_model": "nothing.res"}, {}, "no attachment named"),
                                        ({"refine_cycles": 0}, {}, "refine_cycles")):
            with pytest.raises(ServerError) as e:
                c.call("solve", params, dict(SUCROSE, **attached))
            assert e.value.code == "bad_input" and words in e.value.message
