"""The manager's local control socket: one JSON request line, one JSON reply line, both typed.

Peers are identified with SO_PEERCRED: root and the manager's own uid may use every
command and see everything. On a multi-user endpoint any other local user may connect and
sees only what is theirs: their user endpoints, blocks, nodes and task events, and of the
endpoint as a whole counts only (gce.daemon.public_status.peer_view); they may stop and cancel
only their own. A personal endpoint refuses everyone else with PERMISSION_DENIED. A failed
reply carries a code (ControlCode) for programs and a sentence for people: a client decides by
the code, never by the words.

On the wire a reply is ``{"ok": true, "protocol": N, "gce_version": V, ...fields}`` or
``{"ok": false, "protocol": N, "gce_version": V, "code": CODE, "error": TEXT}``; the status
reply's fields are those of gce.daemon.status.EndpointStatus.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Awaitable, Callable

from gce import __version__
from gce.config.paths import EndpointPaths
from gce.daemon.status import PROTOCOL
from gce.errors import NotRunning, PermissionDenied
from gce.transport import limits

MAX_REQUEST = 64 * 1024
# On a multi-user endpoint every local user may connect. One who opens connections and sends
# nothing, or asks and never reads, must not tie up the root manager's file descriptors and the
# memory of its replies: a few connections per user at a time (the rest are told BUSY at once),
# and a reply not taken within WRITE_TIMEOUT is dropped. Root and the owner are not limited.
PEER_CONNECTIONS = 4  # per uid, for uids other than root and the manager's own
OTHERS_CONNECTIONS = 64  # for all of them together
WRITE_TIMEOUT = 10.0  # seconds a reply may wait for its peer to read it
READ_TIMEOUT = 10.0  # seconds a peer may take to send its request line


class ControlCode(str, Enum):
    PERMISSION_DENIED = "PERMISSION_DENIED"  # the peer may not use this endpoint
    UNKNOWN_COMMAND = "UNKNOWN_COMMAND"  # a command this manager does not know (it may be older)
    BAD_REQUEST = "BAD_REQUEST"  # the request line is not a request
    NOT_FOUND = "NOT_FOUND"  # no such task or user endpoint (or none the peer may see)
    BUSY = "BUSY"  # the peer has as many connections open as it may: try again
    INTERNAL = "INTERNAL"  # the manager failed to answer; its log says why

    @classmethod
    def read(cls, value: object) -> ControlCode:
        """The code of a reply; one this gce does not know (a newer manager's) counts as INTERNAL."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL


class ControlError(Exception):
    """A request the manager answers with an error CODE and TEXT."""

    def __init__(self, code: ControlCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class Request:
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    protocol: int = PROTOCOL

    def to_dict(self) -> dict[str, Any]:
        # Protocol 1 requests are the lines every gce has sent, {"command", "args"}: their number is
        # implied, so older managers read them as they always did. A later protocol says its own.
        data: dict[str, Any] = {"command": self.command, "args": dict(self.args)}
        if self.protocol != 1:
            data["protocol"] = self.protocol
        return data

    @classmethod
    def from_dict(cls, data: object) -> Request:
        """Read a request line's JSON; ControlError(BAD_REQUEST) says what is wrong with it."""
        if not isinstance(data, Mapping):
            raise ControlError(ControlCode.BAD_REQUEST, "a request is a JSON object")
        command, args, protocol = data.get("command"), data.get("args") or {}, data.get("protocol", 1)
        if not isinstance(command, str) or not command:
            raise ControlError(ControlCode.BAD_REQUEST, "the request names no command")
        if not isinstance(args, Mapping):
            raise ControlError(ControlCode.BAD_REQUEST, "the request's args must be a JSON object")
        if not isinstance(protocol, int) or isinstance(protocol, bool):
            raise ControlError(ControlCode.BAD_REQUEST, "the request's protocol must be an integer")
        return cls(command, dict(args), protocol)


@dataclass(frozen=True)
class Reply:
    ok: bool = True
    fields: dict[str, Any] = field(default_factory=dict)  # what a successful command answers
    code: ControlCode | None = None  # why it failed
    error: str = ""
    protocol: int = PROTOCOL
    gce_version: str = __version__

    @classmethod
    def success(cls, fields: Mapping[str, Any] | None = None) -> Reply:
        return cls(True, dict(fields or {}))

    @classmethod
    def failure(cls, code: ControlCode, error: str) -> Reply:
        return cls(False, {}, code, error)

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"ok": self.ok, "protocol": self.protocol, "gce_version": self.gce_version}
        if not self.ok:
            return {**head, "code": (self.code or ControlCode.INTERNAL).value, "error": self.error}
        return {**head, **self.fields, **head}  # the envelope's words are the manager's own

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reply:
        """Read a reply, from a manager of any gce version: what it lacks is defaulted (an old
        manager's refusal, which had no code, counts as INTERNAL)."""
        protocol, version = data.get("protocol", 0), data.get("gce_version", "")
        protocol = protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else 0
        version = version if isinstance(version, str) else ""
        if data.get("ok") is False:
            return cls(False, {}, ControlCode.read(data.get("code")), str(data.get("error") or ""), protocol, version)
        fields = {k: v for k, v in data.items() if k not in ("ok", "protocol", "gce_version")}
        return cls(True, fields, None, "", protocol, version)


Handler = Callable[[Request, int], Awaitable[Reply]]


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


async def _answer(reader: asyncio.StreamReader, uid: int, own_uid: int, handler: Handler, others: bool) -> Reply:
    try:
        # Read before refusing: closing on an unread request would reset the connection, and
        # the refused peer would never see why.
        line = await asyncio.wait_for(reader.readline(), timeout=READ_TIMEOUT)
        if uid not in (0, own_uid) and not others:
            return Reply.failure(ControlCode.PERMISSION_DENIED,
                                 "permission denied: this endpoint belongs to another user")
        data = limits.loads(line or b"{}")  # depth-checked: see gce.daemon.main
    except (ValueError, asyncio.LimitOverrunError) as e:  # over MAX_REQUEST, not JSON, too deep
        raise ControlError(ControlCode.BAD_REQUEST, f"the request is not a JSON line: {e}") from None
    return await handler(Request.from_dict(data), uid)


def _busy(counts: dict[int, int], uid: int) -> str:
    """Why a connection of UID is not served now, or "" when it is."""
    if counts.get(uid, 0) >= PEER_CONNECTIONS:
        return (f"the endpoint is already answering {PEER_CONNECTIONS} requests of this user; "
                "try again when they are done")
    if sum(counts.values()) >= OTHERS_CONNECTIONS:
        return "the endpoint is answering as many requests of other users as it takes at once; try again shortly"
    return ""


def connections_of(server: asyncio.AbstractServer, uid: int) -> int:
    """How many connections of UID SERVER (from serve) holds now."""
    counts: dict[int, int] = getattr(server, "gce_connections", {})
    return counts.get(uid, 0)


async def serve(path: Path, handler: Handler, *, others: bool = False) -> asyncio.AbstractServer:
    """Answer requests on the unix socket PATH with HANDLER. Only root and this process's uid
    may connect, unless OTHERS (a multi-user endpoint): then every local user may, and HANDLER
    answers each for their uid, a few of their connections at a time (see PEER_CONNECTIONS)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    own_uid = os.geteuid()
    counts: dict[int, int] = {}  # uid -> connections held now, for uids other than root and the owner

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid, counted = -1, False
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            busy = _busy(counts, uid) if uid not in (0, own_uid) else ""
            if busy:
                try:  # its request is read (briefly) so that it sees the reply, not a reset
                    await asyncio.wait_for(reader.readline(), timeout=1.0)
                except (asyncio.TimeoutError, ValueError, ConnectionError):
                    pass
                reply = Reply.failure(ControlCode.BUSY, busy)
            else:
                if uid not in (0, own_uid):
                    counts[uid], counted = counts.get(uid, 0) + 1, True
                reply = await _answer(reader, uid, own_uid, handler, others)
        except ControlError as e:
            reply = Reply.failure(e.code, e.text)
        except Exception as e:  # a bad client must never hurt the manager
            reply = Reply.failure(ControlCode.INTERNAL, f"{type(e).__name__}: {e}")
        try:
            writer.write(json.dumps(reply.to_dict(), default=str).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (asyncio.TimeoutError, ConnectionError):
            writer.transport.abort()  # a peer that does not read its reply loses it
        finally:
            writer.close()
            if counted:
                counts[uid] -= 1
                if not counts[uid]:
                    del counts[uid]

    old = os.umask(0o077)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old)
    setattr(server, "gce_connections", counts)
    if others:  # SO_PEERCRED decides who sees what; the file's mode would only keep users out
        path.chmod(0o666)
        parent = path.parent.stat()
        if parent.st_uid == own_uid and not parent.st_mode & 0o001:
            path.parent.chmod(parent.st_mode & 0o7777 | 0o011)  # reachable by name, not listed
    return server


def request(paths: EndpointPaths, command: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """Send one command to the endpoint's manager and return its reply's JSON as it came; raise
    NotRunning if none answers, PermissionDenied if the manager refuses this user."""
    reply = exchange(paths, Request(command, args), timeout)
    data = reply_json(paths, reply)
    if data.get("ok") is False and ControlCode.read(data.get("code")) is ControlCode.PERMISSION_DENIED:
        raise PermissionDenied(f"cannot query endpoint {paths.name!r}", str(data.get("error") or ""))
    return data


def exchange(paths: EndpointPaths, req: Request, timeout: float = 5.0) -> bytes:
    """REQ's reply line from the endpoint's manager, as bytes; NotRunning if none answers."""
    path = paths.control_socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        s.sendall(json.dumps(req.to_dict()).encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NotRunning(
            f"endpoint {paths.name!r} is not running", f"no manager answers on {path}", hint=f"gce start {paths.name}"
        ) from None
    except socket.timeout:
        raise NotRunning(
            f"endpoint {paths.name!r} did not answer", f"no reply on {path} within {timeout:g} s"
        ) from None
    finally:
        s.close()
    return b"".join(chunks)


def reply_json(paths: EndpointPaths, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise NotRunning(f"endpoint {paths.name!r} gave no valid reply", f"on {paths.control_socket}")
    return data
