"""``gce-worker-pool``: parsl's worker pool (process_worker_pool.py), started faster.

Before its first task a cold user endpoint waits on interpreters that each import parsl in
turn: the UEP, the interchange, the worker pool, then the pool's multiprocessing manager and
each worker, which parsl starts with the "spawn" method. With many users' endpoints starting
at once (a multi-user endpoint after a restart) that CPU is what they queue for. So:

- The pool's manager and workers are forked from a fork server instead: the pool forks that
  server from itself right after importing parsl, while it is still single-threaded (forking
  a single-threaded process is what makes a fork server as safe as spawning: Python docs,
  multiprocessing, "Contexts and start methods"). Where that cannot be done the standard
  fork server is started, which imports parsl once (gce.uep.pool_preload).
- Half of importing parsl is typeguard instrumenting parsl's decorated functions and classes
  (it re-parses and recompiles each one) so that building a parsl config checks its argument
  types. No config is built in the pool or the interchange (gce.uep.interchange), so there
  parsl is imported with ``typeguard.typechecked`` a no-op, restored at once for user code.
  The UEP, which builds the engine from the admin's config, keeps the checks.

The arguments are process_worker_pool.py's. HighThroughputEngine starts it for blocks on this
host (LocalProvider) where the workers' environment has it, and parsl's own pool otherwise.
"""

from __future__ import annotations

import importlib
import multiprocessing
import runpy
import sys
from typing import Any

from gce.uep.parsl_compat import WORKER_POOL as POOL


def _unchecked(target=None, **_options):
    return _unchecked if target is None else target


def import_parsl() -> None:
    """Import parsl (which imports every module of it that typeguard instruments) without
    typeguard's instrumentation."""
    try:
        import typeguard
    except ImportError:  # a parsl without typeguard: nothing to skip
        importlib.import_module("parsl")
        return
    checked = typeguard.typechecked
    typeguard.typechecked = _unchecked  # type: ignore[assignment]
    try:
        importlib.import_module("parsl")
    finally:
        typeguard.typechecked = checked  # type: ignore[assignment]


def htex_options(local_workers: bool) -> dict[str, Any]:
    """HighThroughputExecutor options a user endpoint sets unless its config does: the
    interchange started by this module's means, and for blocks on this host, no probing of
    network interfaces and this pool when the workers' environment (after worker_init, which
    may activate another one) has it, else parsl's."""
    from gce.uep.parsl_compat import launch_cmd_with_pool

    # Without the cwd on sys.path, like the UEP itself (see gce.daemon.spawn.python_command).
    safe = ["-P"] if sys.version_info >= (3, 11) else []
    options: dict[str, Any] = {"interchange_launch_cmd": [sys.executable, *safe, "-m", "gce.uep.interchange"]}
    if local_workers:
        pool = '"$(command -v gce-worker-pool || command -v process_worker_pool.py)"'
        options.update(address="127.0.0.1", launch_cmd=launch_cmd_with_pool(pool))
    return options


def fork_server() -> bool:
    """Start multiprocessing's fork server as a fork of this process, which has imported parsl
    and runs no other thread, rather than as a new interpreter that imports parsl again.
    ForkServer.ensure_running has no public way to do this: this sets the three attributes it
    sets, as CPython 3.9 to 3.13 name them. False, with nothing done, where they or
    forkserver.main's parameters differ, or another thread runs."""
    import inspect
    import os
    import socket
    import threading
    from multiprocessing import connection, forkserver, resource_tracker, util

    server = getattr(forkserver, "_forkserver", None)
    known = ["listener_fd", "alive_r", "preload", "main_path", "sys_path"]
    attributes = ("_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid")
    if (server is None or threading.active_count() != 1
            or list(inspect.signature(forkserver.main).parameters) != known
            or any(getattr(server, a, 0) is not None for a in attributes)):
        return False
    resource_tracker.ensure_running()
    address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]  # private, not in typeshed
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    if not util.is_abstract_socket_namespace(address):
        os.chmod(address, 0o600)
    listener.listen()
    alive_r, alive_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the server: it leaves by os._exit, never back into the pool's code
        code = 1
        try:
            os.close(alive_w)
            forkserver.main(listener.fileno(), alive_r, [])
        except SystemExit:  # every client is gone
            code = 0
        finally:
            os._exit(code)
    os.close(alive_r)
    listener.close()
    server._forkserver_address, server._forkserver_alive_fd, server._forkserver_pid = address, alive_w, pid
    return True


def main() -> None:
    import_parsl()
    import parsl.multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    if not fork_server():  # the public way: a new interpreter that imports parsl once
        ctx.set_forkserver_preload(["gce.uep.pool_preload"])
    # The pool module takes its start method from this name when it runs: set it first.
    parsl.multiprocessing.SpawnContext = ctx  # type: ignore[misc, assignment]
    runpy.run_module(POOL, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
