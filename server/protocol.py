"""The aisolve wire protocol (docs/PROTOCOL.md): multipart ZeroMQ messages, JSON header + binary attachments.

Shared by the server and the thin client, so it must import on Python 3.8 with nothing but the
standard library: no cctbx, numpy or torch here.

A message is a list of frames: frame 0 is the UTF-8 JSON header, frames 1.. are attachments whose
names and sizes the header lists, in order. Requests carry {"protocol", "id", "method", "params",
"attachments"}; replies carry {"protocol", "id", "type", ...} with type one of accepted, progress,
result or error.
"""
from __future__ import annotations

import json
import uuid
from typing import Dict, List, Optional, Tuple

PROTOCOL_VERSION = 1
METHODS = ("ping", "status", "solve", "phase", "assign_elements", "add_hydrogens", "cancel")
REPLY_TYPES = ("accepted", "progress", "result", "error")
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024  # bytes, all frames together
MAX_HEADER = 1024 * 1024

# error codes: (code, meaning); the message of an error reply says what exactly went wrong
ERRORS = {
    "bad_message": "the frames are not a valid aisolve message",
    "unsupported_version": "the protocol version is not one this server speaks",
    "too_large": "the message exceeds the server's size limit",
    "unknown_method": "no such method",
    "bad_input": "the attached files or parameters cannot be used",
    "busy": "the job queue is full; try again later",
    "timeout": "the job ran past its time limit",
    "cancelled": "the job was cancelled",
    "worker_crashed": "the worker running the job died; the job was not completed",
    "unauthorised": "this client is not allowed",
    "internal": "an unexpected server error",
}


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` is one of ERRORS."""

    def __init__(self, code: str, message: str, request_id: Optional[str] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


def new_request_id() -> str:
    return uuid.uuid4().hex


def attach_start_model(params: Dict, attachments: Dict[str, bytes], file_name: str, data: bytes) -> None:
    """Add a starting model to a solve request: its own attachment, named by params["start_model"]
    (prefixed, since it may share its file name with the model the data come with)."""
    name = "start_" + file_name
    params["start_model"] = name
    attachments[name] = data


def encode(header: Dict, attachments: Optional[Dict[str, bytes]] = None) -> List[bytes]:
    """Frames for a header and named attachments (the header gets their names and sizes)."""
    attachments = attachments or {}
    header = dict(header)
    header.setdefault("protocol", PROTOCOL_VERSION)
    header["attachments"] = [{"name": k, "size": len(v)} for k, v in attachments.items()]
    return [json.dumps(header, separators=(",", ":")).encode("utf-8")] + [bytes(v) for v in attachments.values()]


def request(method: str, params: Optional[Dict] = None, attachments: Optional[Dict[str, bytes]] = None,
            request_id: Optional[str] = None) -> Tuple[str, List[bytes]]:
    """(request id, frames) of a request."""
    rid = request_id or new_request_id()
    return rid, encode({"id": rid, "method": method, "params": params or {}}, attachments)


def reply(request_id: str, kind: str, attachments: Optional[Dict[str, bytes]] = None, **fields) -> List[bytes]:
    assert kind in REPLY_TYPES
    return encode({"id": request_id, "type": kind, **fields}, attachments)


def error_reply(request_id: Optional[str], code: str, message: str) -> List[bytes]:
    assert code in ERRORS
    return reply(request_id or "", "error", code=code, message=message)


def decode(frames: List[bytes], max_size: int = DEFAULT_MAX_MESSAGE) -> Tuple[Dict, Dict[str, bytes]]:
    """Header and attachments of a message; ProtocolError for anything malformed."""
    if not frames:
        raise ProtocolError("bad_message", "empty message")
    total = sum(len(f) for f in frames)
    if total > max_size:
        raise ProtocolError("too_large", f"message of {total} bytes exceeds the limit of {max_size} bytes")
    raw = frames[0]
    if len(raw) > MAX_HEADER:
        raise ProtocolError("too_large", f"header of {len(raw)} bytes exceeds {MAX_HEADER} bytes")
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_message", f"frame 0 is not a UTF-8 JSON header: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_message", "the header is not a JSON object")
    rid = header.get("id") if isinstance(header.get("id"), str) else None
    version = header.get("protocol")
    if version != PROTOCOL_VERSION:
        raise ProtocolError("unsupported_version",
                            f"protocol version {version!r}; this side speaks {PROTOCOL_VERSION}", rid)
    listed = header.get("attachments", [])
    if not isinstance(listed, list) or not all(
            isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("size"), int) for a in listed):
        raise ProtocolError("bad_message", "'attachments' must list {name, size} objects", rid)
    if len(listed) != len(frames) - 1:
        raise ProtocolError("bad_message", f"the header lists {len(listed)} attachments but "
                                           f"{len(frames) - 1} frames follow", rid)
    attachments = {}
    for meta, frame in zip(listed, frames[1:]):
        if meta["size"] != len(frame):
            raise ProtocolError("bad_message", f"attachment {meta['name']!r} is {len(frame)} bytes, "
                                               f"the header says {meta['size']}", rid)
        attachments[meta["name"]] = bytes(frame)
    return header, attachments


def validate_request(header: Dict) -> Tuple[str, str, Dict]:
    """(id, method, params) of a decoded request header; ProtocolError otherwise."""
    rid = header.get("id")
    if not isinstance(rid, str) or not 0 < len(rid) <= 128:
        raise ProtocolError("bad_message", "a request needs an 'id' string of 1-128 characters")
    method = header.get("method")
    if method not in METHODS:
        raise ProtocolError("unknown_method", f"unknown method {method!r}; known: {', '.join(METHODS)}", rid)
    params = header.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("bad_message", "'params' must be a JSON object", rid)
    return rid, method, params
