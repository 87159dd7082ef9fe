"""Thin client of the aisolve server: Python 3.8+, pyzmq only (it runs inside Olex2's Python).

    from aisolve.server.client import Client
    with Client("tcp://127.0.0.1:5555") as c:
        header, files = c.call("solve", {"typer": "auto"},
                               {"x.ins": open("x.ins", "rb").read(), "x.hkl": open("x.hkl", "rb").read()},
                               progress=lambda f, m: print(f, m))

Retries resend the same request id, so the server answers with the job already made (or its
stored result) instead of starting a second one.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Tuple

import zmq

from aisolve.server import protocol


class ServerError(Exception):
    """The server answered with an error; `code` is one of protocol.ERRORS."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerUnavailable(Exception):
    """No answer from the server within the time allowed."""


class Client:
    def __init__(self, url: str, reply_timeout: float = 10.0, retries: int = 2, silence_timeout: float = 60.0,
                 server_key: Optional[bytes] = None, client_keys: Optional[Tuple[bytes, bytes]] = None):
        """`reply_timeout`: seconds to wait for the server's first answer before resending;
        `silence_timeout`: seconds without any message about a running job before asking again.
        CurveZMQ: `server_key` (the server's public key) and `client_keys` (public, secret)."""
        self.url = url
        self.reply_timeout = reply_timeout
        self.retries = retries
        self.silence_timeout = silence_timeout
        self.ctx = zmq.Context.instance()
        self.server_key = server_key
        self.client_keys = client_keys
        self.sock = None
        self._connect()

    def _connect(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, b"c-" + os.urandom(8).hex().encode())
        if self.server_key:
            public, secret = self.client_keys or zmq.curve_keypair()
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, self.server_key
        sock.connect(self.url)
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ping(self) -> Dict:
        return self.call("ping")[0]

    def status(self) -> Dict:
        return self.call("status")[0]

    def cancel(self, request_id: str) -> Dict:
        return self.call("cancel", {"id": request_id})[0]

    def call(self, method: str, params: Optional[Dict] = None, attachments: Optional[Dict[str, bytes]] = None,
             progress: Optional[Callable[[float, str], None]] = None, timeout: Optional[float] = None,
             request_id: Optional[str] = None,
             idle: Optional[Callable[[], None]] = None) -> Tuple[Dict, Dict[str, bytes]]:
        """(result header, attachments) of a request; ServerError for an error reply,
        ServerUnavailable when the server does not answer. `timeout` bounds the whole call;
        `idle` is called between 100 ms polls (a GUI keeps painting: Olex2's olx.Refresh)."""
        rid, frames = protocol.request(method, params, attachments, request_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        silent_rounds = 0
        accepted = False
        while True:
            self.sock.send_multipart(frames, copy=False)
            wait = self.silence_timeout if accepted else self.reply_timeout
            last_heard = time.monotonic()
            heard = False
            while True:
                now = time.monotonic()
                if deadline is not None and now > deadline:
                    raise ServerUnavailable(f"no result for {method} within {timeout:.0f} s (request {rid})")
                if now - last_heard > wait:
                    break  # silence: ask again with the same id
                if not self.sock.poll(100):
                    if idle is not None:
                        idle()
                    continue
                header, files = protocol.decode(self.sock.recv_multipart(), max_size=1 << 34)
                if header.get("id") not in (rid, ""):
                    continue  # a late reply to an earlier call
                last_heard = time.monotonic()
                heard = True
                kind = header.get("type")
                if kind == "accepted":
                    accepted = True
                    wait = self.silence_timeout
                elif kind == "progress":
                    if progress is not None:
                        progress(float(header.get("fraction") or 0.0), str(header.get("message", "")))
                elif kind == "result":
                    return header, files
                elif kind == "error":
                    raise ServerError(header.get("code", "internal"), header.get("message", ""))
            silent_rounds = 0 if heard else silent_rounds + 1
            if silent_rounds > self.retries:
                raise ServerUnavailable(f"the server at {self.url} did not answer {method} "
                                        f"({silent_rounds} tries, request {rid})")
            if not accepted:
                self._connect()  # a fresh socket: the old one may hold a dead connection's queue
