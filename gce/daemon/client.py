"""The one way commands (and the TUI) reach endpoints: whether one runs, what its manager says
about itself, starting and stopping it, and the identity mapping an admin tests.

Commands import gce.daemon.client and no other module of gce.daemon, so the daemon's insides
can change without them. The modules behind it are imported when first used: `gce --help`
must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from gce import __version__
from gce.config.paths import EndpointPaths
from gce.daemon.activity import BlockStatus as BlockStatus
from gce.daemon.activity import BlockTransition as BlockTransition
from gce.daemon.activity import BreakerStatus as BreakerStatus
from gce.daemon.activity import NodeStatus as NodeStatus
from gce.daemon.activity import NodeTask as NodeTask
from gce.daemon.activity import TaskDetail as TaskDetail
from gce.daemon.activity import TaskEvent as TaskEvent
from gce.daemon.pidfile import Liveness as Liveness
from gce.daemon.status import PROTOCOL, StatusError
from gce.daemon.status import EndpointStatus as EndpointStatus
from gce.daemon.status import EngineStatus as EngineStatus
from gce.daemon.status import Snapshot as Snapshot
from gce.daemon.status import UepStatus as UepStatus
from gce.errors import GceError, TemporaryFailure, Unavailable

if TYPE_CHECKING:
    from gce.config.model import EndpointConfig
    from gce.daemon.idmap import IdentityMapper
    from gce.daemon.idmap import MappingRefused as MappingRefused  # at run time: __getattr__ below
    from gce.daemon.privileges import LocalUser

CONTROL_TIMEOUT = 5.0
T = TypeVar("T")


class ManagerError(GceError):
    """The manager answered with an error; CODE (gce.daemon.control.ControlCode) says which."""

    def __init__(self, what: str, why: str, code: str, hint: str = "") -> None:
        super().__init__(what, why, hint=hint, exit_code=Unavailable.exit_code)
        self.code = code


@dataclass(frozen=True)
class StatusReply:
    status: EndpointStatus
    data: dict[str, Any]  # the reply's JSON as the manager sent it, without "ok": what --json prints


def older_manager(name: str, version: str, protocol: int, why: str) -> GceError:
    """The error for a manager of another gce whose reply this gce cannot read."""
    runs = f"gce {version}" if version else f"an older gce (protocol {protocol})"
    return Unavailable(f"endpoint {name} runs {runs}, this is gce {__version__}", why,
                       hint=f"gce restart {name} runs it with this gce")


class EndpointClient:
    """One endpoint, as its owner (or root) sees it."""

    def __init__(self, paths: EndpointPaths, timeout: float = CONTROL_TIMEOUT) -> None:
        self.paths = paths
        self.timeout = timeout

    # -- is it running -------------------------------------------------------------
    def liveness(self) -> Liveness:
        """Whether the manager runs (from its lock), or why not (from its state file)."""
        from gce.daemon import pidfile

        return pidfile.probe(self.paths)

    def lock_is_held(self) -> bool:
        from gce.daemon import pidfile

        return pidfile.lock_is_held(self.paths)

    def take_lock(self) -> int:
        """Take the manager's lock, so that the endpoint cannot start while it is held (an open
        file descriptor: closing it lets go); AlreadyRunning if a manager holds it."""
        from gce.daemon import pidfile

        return pidfile.acquire_lock(self.paths)

    # -- asking the manager ----------------------------------------------------------
    def _ask(self, command: str, what: str, **args: Any) -> tuple[dict[str, Any], int, str]:
        """COMMAND's successful reply; ManagerError (WHAT failed) when the manager answers an error."""
        from gce.daemon import control

        data = control.request(self.paths, command, timeout=self.timeout, **args)
        reply = control.Reply.from_dict(data)
        if not reply.ok:
            code = (reply.code or control.ControlCode.INTERNAL).value
            if code == control.ControlCode.UNKNOWN_COMMAND.value and reply.gce_version != __version__:
                raise older_manager(self.paths.name, reply.gce_version, reply.protocol, reply.error)
            if code == control.ControlCode.BUSY.value:  # this user's other requests hold the socket
                raise TemporaryFailure(what, reply.error, hint="try again in a few seconds")
            raise ManagerError(what, reply.error, code)
        return data, reply.protocol, reply.gce_version

    def status_reply(self) -> StatusReply:
        """The manager's status, typed and as it came; a status this gce cannot read names the
        manager's gce when that differs from ours."""
        name = self.paths.name
        data, protocol, version = self._ask("status", f"endpoint {name!r} did not report its status")
        data = {k: v for k, v in data.items() if k != "ok"}
        return StatusReply(self._read("status", EndpointStatus.from_dict, data, protocol, version), data)

    def status(self) -> EndpointStatus:
        return self.status_reply().status

    def stop(self) -> None:
        """Ask the manager to stop (it stops its user endpoints first); returns once asked."""
        self._ask("stop", f"endpoint {self.paths.name!r} did not take the request to stop")

    def _read(self, what: str, read: Callable[[dict[str, Any]], T], data: dict[str, Any], protocol: int,
              version: str) -> T:
        """READ of a reply's DATA; a reply this gce cannot read names the manager's gce when that differs."""
        try:
            return read(data)
        except StatusError as e:
            name = self.paths.name
            if protocol != PROTOCOL or (version and version != __version__):
                raise older_manager(name, version, protocol, f"its {what} cannot be read: {e}") from None
            raise Unavailable(f"endpoint {name!r} sent a {what} that cannot be read", str(e),
                              hint=f"gce diagnostic --endpoint {name}; its log: {self.paths.log_file}") from None

    def snapshot(self, since: int = 0) -> Snapshot:
        """The status with the task events after SINCE (a cursor of an earlier snapshot; 0: every
        event the manager still holds); ask the next one from its ``cursor``."""
        data, protocol, version = self._ask("snapshot", f"endpoint {self.paths.name!r} did not send a snapshot",
                                            since=since)
        return self._read("snapshot", Snapshot.from_dict, data, protocol, version)

    def task(self, task_id: str) -> TaskDetail:
        """TASK_ID's last event, with its error sentence and remote traceback when it failed;
        ManagerError (code NOT_FOUND) when the manager holds nothing of it (any more)."""
        data, protocol, version = self._ask("task", f"endpoint {self.paths.name!r} did not describe task "
                                            f"{task_id}", task_id=task_id)
        return self._read("task", TaskDetail.from_dict, data, protocol, version)

    def stop_uep(self, key: str) -> None:
        """Stop the user endpoint KEY (a status's ``user_endpoints[i].key``); it starts again on its
        next task. ManagerError PERMISSION_DENIED when it is not the caller's."""
        self._ask("stop_uep", f"endpoint {self.paths.name!r} did not stop user endpoint {key}", key=key)

    def cancel_block(self, uep: str, block_id: str) -> None:
        """Ask the user endpoint UEP to cancel its block BLOCK_ID (returns once the request is passed
        on; the block's state in later snapshots says when it is gone)."""
        self._ask("cancel_block", f"endpoint {self.paths.name!r} did not cancel block {block_id} of {uep}",
                  uep=uep, block_id=block_id)

    def resume(self, user: str | None = None) -> list[dict[str, str]]:
        """Let the user endpoints whose blocks kept failing submit blocks again (those of local user
        USER only, when given): [{"uep": key, "reason": why they had stopped}], empty when none had.
        ManagerError NOT_FOUND for an unknown USER, PERMISSION_DENIED for another user's."""
        args = {} if user is None else {"user": user}
        data, _protocol, _version = self._ask("resume", f"endpoint {self.paths.name!r} did not resume its user "
                                              "endpoints", **args)
        resumed = data.get("resumed")
        return [r for r in resumed if isinstance(r, dict)] if isinstance(resumed, list) else []

    # -- starting and stopping (gce start, stop, restart) ----------------------------
    def start_detached(self, timeout: float) -> dict[str, Any]:
        """Start the manager in the background; return once it works ({pid, endpoint_id,
        log_file}) or raise why it does not."""
        from gce.daemon import launcher

        return launcher.start_detached(self.paths, timeout=timeout)

    def run_foreground(self) -> int:
        """Run the manager in this process until it stops; its exit status."""
        from gce.daemon import launcher

        return launcher.run_foreground(self.paths)

    def stop_all(self, timeout: float) -> bool:
        """Stop the manager and everything under it; False if it was not running."""
        from gce.daemon import launcher

        return launcher.stop(self.paths, timeout=timeout)


# -- identity mapping (gce idmap test, the diagnostic) --------------------------------
def mapper_for(config: EndpointConfig) -> IdentityMapper:
    """The endpoint's identity mapper, from its mapping file."""
    from gce.daemon import idmap

    return idmap.mapper_for(config)


def map_identity(mapper: IdentityMapper, identity: str, config: EndpointConfig) -> tuple[LocalUser, str]:
    """The local user IDENTITY maps to and the rule that decided, as the manager would map it;
    raises MappingRefused (with .rule and .detail) otherwise."""
    from gce.daemon import policy

    return policy.map_identity(mapper, identity, config)


def mapping_rules(document: Any, endpoint_id: str) -> int:
    """How many rules a parsed identity mapping document holds; GceError if it is not valid."""
    from gce.daemon import idmap

    return len(idmap.parse_rules(document, endpoint_id))


def __getattr__(name: str) -> Any:
    # MappingRefused is the daemon's own class (re-exported: wrapping it adds nothing), imported
    # only when a command asks for it, since idmap pulls in more than `gce --help` should load.
    if name == "MappingRefused":
        from gce.daemon import idmap

        return idmap.MappingRefused
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONTROL_TIMEOUT", "BlockStatus", "BlockTransition", "BreakerStatus", "EndpointClient", "EndpointStatus", "EngineStatus",
           "Liveness", "ManagerError", "MappingRefused", "NodeStatus", "NodeTask", "Snapshot", "StatusReply",
           "TaskDetail", "TaskEvent", "UepStatus", "map_identity", "mapper_for", "mapping_rules", "older_manager"]
