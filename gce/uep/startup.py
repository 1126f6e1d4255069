"""What a user endpoint proves and prepares before it runs anything a submitter sent.

It dies with its manager, checks that it holds exactly the mapped user's credentials in a
session of its own and cannot regain root (DESIGN.md, security invariant 2), and creates its
log and run directories as that user, naming the home directory when that fails. It reads the
config its manager wrote to its stdin, renders the admin's template as the user, and guards its
channel to the manager from the user's other processes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from gce.config.uep import UepConfig, UepConfigError, UepIdentity, UepTemplate
from gce.transport.message import ErrorCode

log = logging.getLogger("gce.uep")


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the manager dies, even by SIGKILL (prctl(2) PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG is unavailable: relying on the channel closing")
    if os.getppid() != parent or parent == 1:  # the manager died before we asked
        sys.exit(1)


class Refusal(Exception):
    """This process must not run: the reason (and an error code for the tasks) goes to the
    manager in a FATAL frame."""

    def __init__(self, reason: str, code: str = ErrorCode.ENDPOINT_FAILED) -> None:
        super().__init__(reason)
        self.code = code


def check_identity(expected: UepIdentity | None) -> None:
    """Refusal unless this process runs with exactly EXPECTED's uid, gid and groups, in a session of
    its own, with umask 077, and cannot become root again (after celery's platforms.py: prove the
    drop, do not assume it)."""
    if not expected:
        return
    uid, gid, groups = expected.uid, expected.gid, sorted(set(expected.groups))
    have = {"uid": (os.getuid(), os.geteuid()), "gid": (os.getgid(), os.getegid()),
            "groups": sorted(set(os.getgroups()))}
    want = {"uid": (uid, uid), "gid": (gid, gid), "groups": groups}
    for what in ("uid", "gid", "groups"):
        if have[what] != want[what]:
            raise Refusal(f"the user endpoint runs with {what} {have[what]} instead of {want[what]}: refusing to run")
    if os.getsid(0) != os.getpid():  # its own session: no terminal or job control of the manager's
        raise Refusal(f"the user endpoint runs in session {os.getsid(0)} instead of its own: refusing to run")
    umask = os.umask(0o077)
    if umask != 0o077:
        raise Refusal(f"the user endpoint started with umask {umask:04o} instead of 0077: refusing to run")
    if uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise Refusal("the user endpoint could become root again after dropping its privileges: refusing to run")


def prepare_directories(conf: UepConfig) -> None:
    """Create the log and run directories (as this process's user); Refusal naming the home
    directory when it is missing or not writable."""
    try:
        for d in (os.path.dirname(conf.log_file or ""), conf.run_dir):
            if d:
                os.makedirs(d, mode=0o700, exist_ok=True)
        if conf.log_file:
            with open(conf.log_file, "a"):
                pass
    except OSError as e:
        home = conf.home
        if home and not os.path.isdir(home):
            raise Refusal(f"the home directory {home} of user {_user_name()} does not exist, so the user "
                          "endpoint has nowhere to keep its logs and files; ask the administrator to "
                          "create it") from None
        if home:
            raise Refusal(f"the home directory {home} of user {_user_name()} is not writable, so the user "
                          f"endpoint cannot keep its logs and files there: {e.strerror or e}") from None
        raise Refusal(f"cannot create the user endpoint's files: {e}") from None


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def render_engine(template: UepTemplate | None) -> dict[str, Any] | None:
    """The engine section the admin's template makes of the user's values; None when untemplated."""
    rendered = render_config(template)
    return None if rendered is None else rendered["engine"]


def render_config(template: UepTemplate | None) -> dict[str, Any] | None:
    """The config (engine, endpoint_setup...) the admin's template makes of the user's values; None
    when untemplated."""
    if template is None:
        return None
    from gce.config import template_vars, templating
    from gce.config.model import EndpointConfig
    from gce.errors import GceError

    config = EndpointConfig(
        name=template.name, endpoint_id="", broker_url="", engine={}, multi_user=True,
        user_config_template_path=template.template_path, user_config_schema_path=template.schema_path,
        raw=template.parent_config,
    )
    try:
        rendered = templating.render_for_endpoint(
            config, template.user_config, source=f"for endpoint {template.name!r}",
            user_runtime={**template_vars.local_runtime(),
                          **{k: v for k, v in template.user_runtime.to_dict().items() if v}},
            mapped_identity=template_vars.mapped_identity_of(os.getuid()),
            template_dir_fd=template.template_dir_fd, schema_fd=template.schema_fd,
        )
    except GceError as e:
        raise Refusal(str(e), getattr(e, "code", ErrorCode.ENDPOINT_FAILED)) from None
    finally:
        close_admin_fds(template)
    return rendered


def close_admin_fds(template: UepTemplate) -> None:
    """Close the descriptors of the admin's files once rendered: a task's code (in this process
    under a ThreadPoolEngine, or in a worker that would inherit them) must not read through them."""
    for fd in (template.template_dir_fd, template.schema_fd):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # already closed: nothing to do
                pass


def guard_channel() -> None:
    """Make this process non-dumpable, so that a task's code in a worker (a process of the same
    user) can neither ptrace it nor take its channel to the manager with pidfd_getfd or
    /proc/PID/fd (both need ptrace access: proc(5), PR_SET_DUMPABLE in prctl(2)). Code that runs
    inside this process (ThreadPoolEngine) still holds the channel: the manager trusts a UEP only
    for the tasks it gave it (gce.daemon.manager.on_uep_frame)."""
    import ctypes

    PR_SET_DUMPABLE = 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("cannot make the user endpoint non-dumpable: %s", os.strerror(ctypes.get_errno()))


def read_config(raw: bytes) -> UepConfig:
    """The config the manager wrote to stdin; Refusal naming what is wrong with it."""
    try:
        return UepConfig.from_dict(json.loads(raw or b"{}"))
    except ValueError as e:  # json.JSONDecodeError included
        raise Refusal(f"the user endpoint's config is invalid: it is not JSON ({e})") from None
    except UepConfigError as e:
        raise Refusal(str(e)) from None
