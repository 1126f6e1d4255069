"""What the manager answers on its control socket (gce.daemon.control carries the requests and
replies): each command for the peer as it may see and act. Root and the manager's own uid see
and may do everything; on a multi-user endpoint another local user sees and acts only on what
is theirs (gce.daemon.public_status.peer_view)."""

from __future__ import annotations

import logging
import os
import pwd
from typing import TYPE_CHECKING, Any, Callable, Protocol

from gce.daemon.control import ControlCode, ControlError, Reply, Request
from gce.daemon.public_status import peer_view
from gce.daemon.status import EndpointStatus, Snapshot

if TYPE_CHECKING:  # the type only: the spool's module need not load for it
    from gce.daemon.snapshot import TaskEvents

log = logging.getLogger(__name__)


class Endpoint(Protocol):
    """What the commands read and do of the manager (gce.daemon.manager.Manager)."""

    events: TaskEvents

    def owner_of(self, key: str) -> int | None: ...  # the uid of user endpoint KEY's account; None: no such

    def stop_uep(self, key: str) -> bool: ...  # False: no such user endpoint

    def cancel_block(self, key: str, block_id: str) -> bool: ...  # False: the user endpoint is not running

    def resume(self, key: str) -> bool: ...  # False: the user endpoint is not running


def _arg(request: Request, name: str, kind: type, default: Any = None) -> Any:
    value = request.args.get(name, default)
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not 0 < len(value) <= 200):
        raise ControlError(ControlCode.BAD_REQUEST, f"{request.command} needs {name!r}: "
                           f"{'a non-negative integer' if kind is int else 'a short string'}")
    return value


class Commands:
    """What the manager answers on its control socket: ``status``, ``snapshot``, ``task``, ``stop``,
    ``stop_uep``, ``cancel_block`` and ``resume``, each for the peer UID as it may see and act (see above).
    Without ENDPOINT (a manager's user endpoints and events), only the status is known."""

    def __init__(self, status: Callable[[], EndpointStatus], stop: Callable[[], None],
                 endpoint: Endpoint | None = None, own_uid: int | None = None) -> None:
        self._status = status
        self._stop = stop
        self._endpoint = endpoint
        self._own_uid = os.geteuid() if own_uid is None else own_uid

    def _sees_all(self, uid: int) -> bool:
        return uid in (0, self._own_uid)

    def _status_for(self, uid: int) -> EndpointStatus:
        status, ep = self._status(), self._endpoint
        if self._sees_all(uid):
            return status
        if ep is None:  # nothing to tell whose a user endpoint is: none of them
            return peer_view(status, uid, lambda key: None, lambda task_id: None)

        def task_uid(task_id: str) -> int | None:
            found = ep.events.detail(task_id)
            return None if found is None else found[0]

        return peer_view(status, uid, ep.owner_of, task_uid)

    def _own_uep(self, request: Request, uid: int, key: str) -> Endpoint:
        """The endpoint, once the peer UID may act on its user endpoint KEY."""
        ep = self._endpoint
        owner = None if ep is None else ep.owner_of(key)
        if ep is None or owner is None:
            raise ControlError(ControlCode.NOT_FOUND, f"no user endpoint {key!r} here")
        if not self._sees_all(uid) and owner != uid:
            raise ControlError(ControlCode.PERMISSION_DENIED,
                               f"permission denied: user endpoint {key!r} belongs to another user")
        return ep

    def _resume(self, request: Request, uid: int) -> Reply:
        """Close the breaker of the user endpoints whose blocks kept failing: all of them the peer
        may act on, or those of local user USER. A local user may resume only their own."""
        user = request.args.get("user")
        wanted: int | None = None
        if user is not None:
            name = _arg(request, "user", str)
            try:
                wanted = pwd.getpwnam(name).pw_uid
            except KeyError:
                raise ControlError(ControlCode.NOT_FOUND, f"no local user {name!r} on this host") from None
            if not self._sees_all(uid) and wanted != uid:
                raise ControlError(ControlCode.PERMISSION_DENIED, f"permission denied: the user endpoints of "
                                   f"{name!r} are not yours to resume")
        ep = self._endpoint
        resumed = []
        for uep in self._status().user_endpoints:
            if not uep.blocks_failing or ep is None:
                continue
            owner = ep.owner_of(uep.key)
            if owner is None or (wanted is not None and owner != wanted) or not (self._sees_all(uid) or owner == uid):
                continue
            if ep.resume(uep.key):
                log.info("user endpoint %s: resuming its blocks on request of uid %d (they failed: %s)",
                         uep.key, uid, uep.shown_reason())
                resumed.append({"uep": uep.key, "reason": uep.shown_reason()})
        return Reply.success({"resumed": resumed})

    async def __call__(self, request: Request, uid: int) -> Reply:
        command = request.command
        if command == "status":
            return Reply.success(self._status_for(uid).to_dict())
        if command == "snapshot":
            since = _arg(request, "since", int, 0)
            if since < 0:
                raise ControlError(ControlCode.BAD_REQUEST, "snapshot needs 'since': a non-negative integer")
            status = self._status_for(uid)
            if self._endpoint is None:
                return Reply.success(Snapshot(status).to_dict())
            events, cursor, dropped = self._endpoint.events.since(
                since, None if self._sees_all(uid) else (lambda owner: owner == uid))
            return Reply.success(Snapshot(status, tuple(events), cursor, dropped).to_dict())
        if command == "task":
            task_id = _arg(request, "task_id", str)
            found = None if self._endpoint is None else self._endpoint.events.detail(task_id)
            if found is None or not (self._sees_all(uid) or found[0] == uid):  # another's is not even named
                raise ControlError(ControlCode.NOT_FOUND, f"no task {task_id!r} among the endpoint's recent tasks")
            return Reply.success(found[1].to_dict())
        if command == "stop":
            if not self._sees_all(uid):
                raise ControlError(ControlCode.PERMISSION_DENIED,
                                   "permission denied: only root and the endpoint's owner may stop it")
            self._stop()
            return Reply.success()
        if command == "stop_uep":
            key = _arg(request, "key", str)
            if not self._own_uep(request, uid, key).stop_uep(key):
                raise ControlError(ControlCode.NOT_FOUND, f"no user endpoint {key!r} here")
            return Reply.success()
        if command == "cancel_block":
            key, block_id = _arg(request, "uep", str), _arg(request, "block_id", str)
            if not self._own_uep(request, uid, key).cancel_block(key, block_id):
                raise ControlError(ControlCode.NOT_FOUND, f"user endpoint {key!r} is not running: it has no blocks")
            return Reply.success()
        if command == "resume":
            return self._resume(request, uid)
        return Reply.failure(ControlCode.UNKNOWN_COMMAND, f"unknown command {command!r}")
