"""A worker process of the ProcessPoolEngine's pool (gce/uep/procpool.py): what runs in it.

Frames on a worker's pipe, written with ``send_bytes`` so that the payload, bytes already, is never
pickled again: to the worker, a 4-byte length, a pickle of the task's (time limit, context, marker)
and the payload; back, one byte (0: the result follows, 1: a pickled exception follows) then the body.

While a task runs, its marker is in the worker's environment as ``GCE_TASK_INSTANCE``, so every
process the task starts carries it, even one that left for a session of its own (a ShellFunction's
command does). When the worker dies with the task (cancelled, past its time limit, its endpoint
gone) the pool kills them too: what a task started does not outlive it as an orphan. A process a
task left behind on purpose and that ended well is not touched by a later task's death.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import threading
from multiprocessing.connection import Connection

LEN = struct.Struct("!I")
RESULT, ERROR = b"\x00", b"\x01"  # the first byte of a reply
TASK_MARKER = "GCE_TASK_INSTANCE"
log = logging.getLogger(__name__)


def work(conn: Connection, max_result_bytes: int, max_output_bytes: int) -> None:
    """A worker's life: run each task that comes down CONN, on this main thread (so that a time
    limit is SIGALRM's: gce.uep.timelimit), until the pool closes its end."""
    from gce.uep import sandbox

    _die_with_pool()
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return
        size = LEN.unpack_from(frame)[0]
        limit, context, marker = pickle.loads(frame[LEN.size:LEN.size + size])
        payload = frame[LEN.size + size:]
        del frame
        os.environ[TASK_MARKER] = marker  # while it runs: the watch below reads it there
        try:
            reply = RESULT + sandbox.run_task(payload, max_result_bytes, max_output_bytes, limit, context)
        except BaseException as e:  # run_task answers all the task does; this is gce's own failure
            try:
                reply = ERROR + pickle.dumps(e)
            except Exception:
                reply = ERROR + pickle.dumps(RuntimeError(f"{type(e).__name__}: {e}"))
        finally:
            os.environ.pop(TASK_MARKER, None)
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            return


def _die_with_pool() -> None:
    """Once the user endpoint is gone, so is this worker, busy or not: killed by SIGKILL, the
    endpoint runs no shutdown, and a task's result has nowhere left to go. The end of spawn's pipe
    that the endpoint holds closes with it, whatever killed it (no polling; unlike PR_SET_PDEATHSIG,
    not tied to the thread that started the worker); a thread waiting on that pipe ends the worker."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None:  # not started by a pool (run in-process, by a test)
        return

    def watch() -> None:
        parent.join()
        running = os.environ.get(TASK_MARKER)  # the task this worker runs now, if any
        if running:
            kill_task_processes(running)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="gce-worker-orphan-watch", daemon=True).start()


def kill_task_processes(marker: str, task_id: str = "") -> int:
    """Kill what the task with MARKER (TASK_ID) started and left running; how many processes."""
    from gce.daemon.proctree import kill_marked

    try:
        killed = kill_marked(f"{TASK_MARKER}={marker}", os.getuid())
    except Exception as e:  # no /proc to read, say: the endpoint's stop still ends them, and the task
        # must be answered all the same
        log.warning("task %s: could not look for the processes it left running: %s", task_id, e)
        return 0
    if killed:
        log.info("task %s: killed %d process(es) it had started, with its worker", task_id, killed)
    return killed
