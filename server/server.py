"""The aisolve server (`aisolve serve`): a ROUTER front end for clients, a ROUTER back end for workers.

One thread runs the broker loop; the work happens in worker processes (local ones started and
watched here, remote ones connecting to the back end), each loading the models once. The broker
keeps a bounded queue, gives each job to an idle worker, streams its progress to the client, and
keeps finished results for a while so that a client retrying with the same request id gets the
same job, never a second one. A worker that dies or goes silent fails only its own job; a local
one is replaced. See docs/PROTOCOL.md.
"""
from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from aisolve.server import protocol
from aisolve.server.threads import shared_thread_env

HEARTBEAT_LIMIT = 10.0  # s of silence after which a remote worker counts as lost
RESULT_KEEP = 600.0  # s a finished result stays available to retries


def _is_local(endpoint: str) -> bool:
    return endpoint.startswith(("ipc://", "inproc://")) or any(h in endpoint for h in ("//127.0.0.1:", "//localhost:"))


@dataclass
class Job:
    id: str
    client: bytes
    method: str
    params: dict
    frames: list
    state: str = "queued"  # queued, running, done
    worker: str | None = None
    deadline: float = 0.0
    reply: list | None = None  # the final reply frames, kept for retries
    finished: float = 0.0


@dataclass
class Worker:
    id: str
    process: subprocess.Popen | None = None  # None for a remote worker
    job: str | None = None
    ready: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    info: dict = field(default_factory=dict)


@dataclass
class ServerConfig:
    frontend: str = "tcp://127.0.0.1:5555"
    backend: str = "tcp://127.0.0.1:5556"
    workers: int = 1
    max_queue: int = 64
    job_timeout: float = 900.0
    max_message: int = protocol.DEFAULT_MAX_MESSAGE
    typer: str = "auto"
    # CurveZMQ: the server's key folder (server.key_secret) and the folder of allowed client keys
    keys: str | None = None
    allow: str | None = None
    # CurveZMQ on the back end too: None means "when keys are given and the back end is not localhost"
    secure_backend: bool | None = None


class Server:
    def __init__(self, cfg: ServerConfig, log=print):
        self.cfg = cfg
        self.log = log
        self.ctx = zmq.Context()
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.workers: dict[str, Worker] = {}
        self.stopping = False
        self.started = time.time()
        self.auth = None
        self.frontend = self.ctx.socket(zmq.ROUTER)
        self.frontend.setsockopt(zmq.LINGER, 0)
        self.frontend.setsockopt(zmq.SNDHWM, 1000)
        # a hard stop for absurd frames; anything above max_message still gets a clean error
        self.frontend.setsockopt(zmq.MAXMSGSIZE, 2 * cfg.max_message)
        self.backend = self.ctx.socket(zmq.ROUTER)
        self.backend.setsockopt(zmq.LINGER, 0)
        # the back end needs CurveZMQ too when workers may connect from other hosts
        self.secure_backend = bool(cfg.keys) and (not _is_local(cfg.backend) if cfg.secure_backend is None
                                                  else cfg.secure_backend)
        if cfg.keys:
            self._start_auth()
            self._secure(self.frontend)
            if self.secure_backend:
                self._secure(self.backend)
        self.frontend.bind(cfg.frontend)
        self.backend.bind(cfg.backend)

    # -- set-up -------------------------------------------------------------------------------
    def _start_auth(self) -> None:
        """One authenticator for both ends: the allowed client and worker keys, plus the server's
        own public key, which the local workers use."""
        import shutil
        import tempfile

        from zmq.auth.thread import ThreadAuthenticator
        if not self.cfg.allow or not Path(self.cfg.allow).is_dir():
            raise FileNotFoundError(f"CurveZMQ needs a folder of allowed public keys (got {self.cfg.allow!r})")
        self._allowed = tempfile.mkdtemp(prefix="aisolve-allow-")
        for key in Path(self.cfg.allow).glob("*.key"):
            shutil.copy(key, self._allowed)
        shutil.copy(Path(self.cfg.keys) / "server.key", Path(self._allowed) / "aisolve-server-itself.key")
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=self._allowed)

    def _secure(self, sock) -> None:
        from aisolve.server.keys import load_secret
        public, secret = load_secret(self.cfg.keys, "server")
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True

    def _spawn(self) -> None:
        wid = f"local-{uuid.uuid4().hex[:8]}"
        keys = ["--server-key", str(Path(self.cfg.keys) / "server.key"), "--keys", self.cfg.keys,
                "--key-name", "server"] if self.secure_backend else []
        proc = subprocess.Popen([sys.executable, "-m", "aisolve.server.worker", "--connect", self.cfg.backend,
                                 "--typer", self.cfg.typer, "--id", wid] + keys,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=shared_thread_env(self.cfg.workers))  # the cores shared, not each taken
        self.workers[wid] = Worker(wid, proc)

    # -- sending ------------------------------------------------------------------------------
    def _to_client(self, job_or_identity, frames: list) -> None:
        identity = job_or_identity.client if isinstance(job_or_identity, Job) else job_or_identity
        try:
            self.frontend.send_multipart([identity] + frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass  # a slow or vanished client: the final reply stays stored for its retry

    def _finish(self, job: Job, frames: list) -> None:
        job.state, job.reply, job.finished = "done", frames, time.monotonic()
        w = self.workers.get(job.worker or "")
        if w is not None and w.job == job.id:
            w.job = None
        self._to_client(job, frames)

    def _fail(self, job: Job, code: str, message: str) -> None:
        self._finish(job, protocol.error_reply(job.id, code, message))

    # -- clients ------------------------------------------------------------------------------
    def _on_client(self, frames: list) -> None:
        identity, frames = frames[0], frames[1:]
        try:
            header, attachments = protocol.decode(frames, self.cfg.max_message)
            rid, method, params = protocol.validate_request(header)
        except protocol.ProtocolError as exc:
            self._to_client(identity, protocol.error_reply(exc.request_id, exc.code, exc.message))
            return
        if method == "ping":
            self._to_client(identity, protocol.reply(rid, "result", pong=True, time=time.time(),
                                                     echo=params.get("echo")))
        elif method == "status":
            self._to_client(identity, protocol.reply(rid, "result", **self.status()))
        elif method == "cancel":
            self._cancel(identity, rid, params.get("id"))
        elif rid in self.jobs:  # a retry: the same job, never a second one
            job = self.jobs[rid]
            job.client = identity
            self._to_client(identity, job.reply if job.state == "done" else
                            protocol.reply(rid, "accepted", state=job.state, retry=True))
        elif self.stopping:
            self._to_client(identity, protocol.error_reply(rid, "busy", "the server is shutting down"))
        elif len(self.queue) >= self.cfg.max_queue:
            self._to_client(identity, protocol.error_reply(
                rid, "busy", f"{len(self.queue)} jobs are waiting (the limit is {self.cfg.max_queue})"))
        else:
            self.jobs[rid] = Job(rid, identity, method, params, protocol.encode(
                {"id": rid, "method": method, "params": params}, attachments))
            self.queue.append(rid)
            self._to_client(identity, protocol.reply(rid, "accepted", state="queued", position=len(self.queue)))

    def _cancel(self, identity: bytes, rid: str, target) -> None:
        job = self.jobs.get(target) if isinstance(target, str) else None
        if job is None or job.state == "done":
            self._to_client(identity, protocol.reply(rid, "result", cancelled=False,
                                                     reason="no such job" if job is None else "already finished"))
            return
        if job.state == "queued":
            self.queue.remove(job.id)
        else:
            self._stop_worker_of(job)
        self._fail(job, "cancelled", "the job was cancelled by a client")
        self._to_client(identity, protocol.reply(rid, "result", cancelled=True))

    def _stop_worker_of(self, job: Job) -> None:
        """A running job cannot be interrupted inside its worker: a local worker is replaced, a
        remote one is forgotten (its late reply is ignored; it registers again when done)."""
        w = self.workers.pop(job.worker or "", None)
        if w is None:
            return
        if w.process is not None:
            w.process.kill()
            w.process.wait(timeout=10)
            if not self.stopping:
                self._spawn()

    # -- workers ------------------------------------------------------------------------------
    def _on_worker(self, frames: list) -> None:
        identity = frames[0].decode("utf-8", "replace")
        try:
            header, attachments = protocol.decode(frames[1:], max_size=1 << 34)
        except protocol.ProtocolError:
            return
        kind = header.get("type")
        wid = identity[:-3] if identity.endswith(".hb") else identity
        w = self.workers.get(wid)
        if kind == "ready":
            if w is None:
                w = self.workers[wid] = Worker(wid)  # a remote worker
            w.ready, w.info, w.last_seen = True, header.get("info", {}), time.monotonic()
            return
        if w is None:
            if kind in ("result", "error") and not identity.endswith(".hb"):
                # a remote worker we gave up on (timeout, cancel) has finished: it is idle again
                self.workers[wid] = Worker(wid, ready=True)
            return
        w.last_seen = time.monotonic()
        job = self.jobs.get(header.get("id", ""))
        if kind == "heartbeat" or job is None or job.worker != wid or job.state != "running":
            return
        if kind == "progress":
            self._to_client(job, protocol.reply(job.id, "progress", fraction=header.get("fraction"),
                                                message=header.get("message", "")))
        elif kind in ("result", "error"):
            fields = {k: v for k, v in header.items() if k not in ("type", "id", "attachments", "protocol")}
            fields["worker"] = wid
            self._finish(job, protocol.reply(job.id, kind, attachments, **fields))

    # -- housekeeping -------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            died = w.process is not None and w.process.poll() is not None
            silent = w.process is None and now - w.last_seen > HEARTBEAT_LIMIT
            if died or silent:
                self.workers.pop(w.id, None)
                job = self.jobs.get(w.job or "")
                if job is not None and job.state == "running":
                    self._fail(job, "worker_crashed", "the worker running this job "
                               + ("died" if died else "went silent") + "; the job was not completed")
                if died and not self.stopping:
                    self._spawn()
        for job in list(self.jobs.values()):
            if job.state == "running" and now > job.deadline:
                self._stop_worker_of(job)
                self._fail(job, "timeout", f"the job ran past its limit of {self._limit(job):.0f} s")
            elif job.state == "done" and now - job.finished > RESULT_KEEP:
                del self.jobs[job.id]
        idle = [w for w in self.workers.values() if w.ready and w.job is None]
        while self.queue and idle:
            job, w = self.jobs[self.queue.popleft()], idle.pop(0)
            job.state, job.worker, job.deadline = "running", w.id, now + self._limit(job)
            w.job = job.id
            self.backend.send_multipart([w.id.encode()] + job.frames)

    def _limit(self, job: Job) -> float:
        asked = job.params.get("timeout")
        return min(float(asked), self.cfg.job_timeout) if isinstance(asked, (int, float)) and asked > 0 \
            else self.cfg.job_timeout

    def status(self) -> dict:
        from importlib.metadata import PackageNotFoundError, version
        try:
            aisolve_version = version("aisolve")
        except PackageNotFoundError:
            aisolve_version = "unknown"
        return {"version": aisolve_version, "protocol": protocol.PROTOCOL_VERSION, "uptime": round(time.time() - self.started),
                "queued": len(self.queue), "running": sum(1 for j in self.jobs.values() if j.state == "running"),
                "max_queue": self.cfg.max_queue, "job_timeout": self.cfg.job_timeout,
                "max_message": self.cfg.max_message, "secure": self.cfg.keys is not None,
                "workers": [{"id": w.id, "local": w.process is not None, "ready": w.ready, "busy": w.job is not None,
                             **w.info} for w in self.workers.values()]}

    # -- main loop ----------------------------------------------------------------------------
    def serve_forever(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        for _ in range(self.cfg.workers):
            self._spawn()
        self.log(json.dumps({"event": "listening", "frontend": self.cfg.frontend, "backend": self.cfg.backend,
                             "workers": self.cfg.workers, "secure": self.cfg.keys is not None}))
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        try:
            while not (self.stopping and not self.queue and not any(j.state == "running" for j in self.jobs.values())):
                for sock, _ in poller.poll(100):
                    frames = sock.recv_multipart()
                    (self._on_client if sock is self.frontend else self._on_worker)(frames)
                self._housekeeping()
        finally:
            self.close()

    def stop(self) -> None:
        """Graceful: no new jobs; queued and running ones finish, then the loop ends."""
        self.stopping = True

    def close(self) -> None:
        for w in self.workers.values():
            try:
                self.backend.send_multipart([w.id.encode()] + protocol.encode({"type": "shutdown"}), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
        for w in self.workers.values():
            if w.process is not None:
                try:
                    w.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    w.process.kill()
        if self.auth is not None:
            self.auth.stop()
            import shutil
            shutil.rmtree(self._allowed, ignore_errors=True)
        self.frontend.close()
        self.backend.close()
        self.ctx.term()
