"""What a task prints, kept while it runs and sent back with its result (gce.uep.execute.run_task).

Only the last ``limit`` bytes of each of stdout and stderr are kept: a function may print 50 MB and
memory stays bounded; nothing is written to disk, so a full disk cannot break a printing task; and
nothing reaches the worker's own stdout, so a chatty function never blocks its worker on a pipe
nobody reads.

Where the task runs decides how:

- On a process's main thread (a process pool worker, a parsl HTEX worker) the capture is at the
  file-descriptor level: for the task's duration fd 1 and fd 2 are pipes, so what C code and child
  processes write is caught too. One drainer thread per process empties the pipes into the task's
  tails while it runs. sys.stdout is block-buffered and sys.stderr line-buffered, as Python makes
  them when its output is no terminal. A background process the task started and left running
  keeps the pipe: what it writes after the task ended is dropped, or lands in the next task's.
  The drainer is Python: C code that writes more than a pipe holds (1 MiB) while it keeps the
  interpreter lock, never letting go of it, would wait for it forever.
- On any other thread (ThreadPoolEngine runs tasks as threads of the user endpoint) fd 1 and fd 2
  are shared by every task, so a capture at that level is impossible: sys.stdout and sys.stderr
  become dispatchers that send each thread's writes to its own task's tails
  (gce.uep.capture_thread). What C code, a child process or a thread the task started writes there
  goes to the user endpoint's own output (its log), not to the task.

Either way everything is put back after each task, however it ended.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import selectors
import sys
import threading
from typing import Any, ContextManager

_CHUNK = 1 << 16
_PIPE_SIZE = 1 << 20  # fewer wake-ups of the drainer for a chatty task (Linux; best effort)


class Tail:
    """The last LIMIT bytes written to it (LIMIT 0: nothing)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.seen = 0
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        self.seen += len(data)
        if len(data) >= self.limit:
            self._buf[:] = data[len(data) - self.limit:]
            return
        self._buf += data
        if len(self._buf) > 2 * self.limit:  # trim now and then, not at every write
            del self._buf[: len(self._buf) - self.limit]

    def add_text(self, text: str) -> None:
        if len(text) > self.limit:  # a character is at least one byte: no need to encode more
            text = text[-self.limit:] if self.limit else ""
        self.add(text.encode("utf-8", "backslashreplace"))

    def value(self) -> bytes:
        data = bytes(self._buf[len(self._buf) - self.limit:]) if len(self._buf) > self.limit else bytes(self._buf)
        if self.seen > len(data):  # cut: start at a whole UTF-8 character
            skip = 0
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
            data = data[skip:]
        return data


def captured(out: Tail, err: Tail) -> ContextManager[Any]:
    """Keep what the body writes to stdout in OUT and to stderr in ERR (limit 0: leave them alone)."""
    if not out.limit and not err.limit:
        return contextlib.nullcontext()
    if threading.current_thread() is threading.main_thread():
        return _FdCapture(_process_pipes(), out, err)
    from gce.uep.capture_thread import per_thread

    return per_thread(out, err)


# -- file-descriptor level (process workers) -----------------------------------------------
# Every system call on a task's path counts: each lets the worker's other threads (parsl's result
# feeder) take the interpreter lock, so the fewest are made: two dup2 each way and one select.


class _Pipes:
    """This process's stand-ins for fd 1 and fd 2, and the thread that empties them. fd 1 and 2 are
    put back after each task as they were at the process's first task (a worker's own code does
    not move them; a task that does is undone)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.write_end: dict[int, int] = {}  # 1, 2 -> the write end of its pipe
        self.read_end: dict[int, int] = {}
        self.tails: dict[int, Tail | None] = {}  # read end -> the running task's tail (None between tasks)
        self.original = {fd: _dup(fd) for fd in (1, 2)}  # -1: it was closed
        for fd in (1, 2):
            r, w = os.pipe()
            os.set_blocking(r, False)
            try:
                import fcntl

                fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
            except OSError:
                pass
            self.write_end[fd], self.read_end[fd], self.tails[r] = w, r, None
        self.streams: dict[int, Any] = {}
        threading.Thread(target=self._drain, name="gce-output", daemon=True).start()

    def stream(self, fd: int) -> Any:
        """sys.stdout (fd 1) or sys.stderr (fd 2) for a task: over the pipe, never closed for good."""
        stream = self.streams.get(fd)
        if stream is None or stream.closed:  # a task may close its sys.stdout
            stream = io.TextIOWrapper(open(self.write_end[fd], "wb", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=fd == 2)
            self.streams[fd] = stream
        return stream

    def _drain(self) -> None:
        selector = selectors.DefaultSelector()
        for r in self.tails:
            selector.register(r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                with self.lock:
                    self.read(key.fd)

    def read(self, r: int) -> bool:
        """Move a chunk of pipe R to its task's tail (between tasks: drop it); False when it is empty.
        Called with the lock held, so a chunk is never read and not yet kept."""
        try:
            data = os.read(r, _CHUNK)
        except BlockingIOError:
            return False
        tail = self.tails[r]
        if tail is not None:
            tail.add(data)
        return bool(data)


class _FdCapture:
    """One task's capture at the file-descriptor level."""

    def __init__(self, pipes: _Pipes, out: Tail, err: Tail) -> None:
        self.pipes, self.out, self.err = pipes, out, err
        self.saved_streams: tuple[Any, Any] = (None, None)

    def __enter__(self) -> None:
        pipes = self.pipes
        self.saved_streams = sys.stdout, sys.stderr
        # What was written before the task goes where it was meant to. C's buffers need no flush
        # here: each task's capture ends with one, and a worker's own code does not use them.
        _flush(self.saved_streams, c_too=False)
        with pipes.lock:
            pipes.tails[pipes.read_end[1]], pipes.tails[pipes.read_end[2]] = self.out, self.err
        os.dup2(pipes.write_end[1], 1)
        os.dup2(pipes.write_end[2], 2)
        sys.stdout, sys.stderr = pipes.stream(1), pipes.stream(2)

    def __exit__(self, *exc_info: Any) -> None:
        pipes = self.pipes
        _flush((sys.stdout, sys.stderr, pipes.streams.get(1), pipes.streams.get(2)))
        sys.stdout, sys.stderr = self.saved_streams
        for fd, copy in pipes.original.items():
            if copy < 0:
                os.close(fd)
            else:
                os.dup2(copy, fd)
        reads = list(pipes.read_end.values())
        with pipes.lock:  # nothing of ours writes to the pipes now: what they hold is the task's
            for r in select.select(reads, [], [], 0)[0]:
                # At most what a pipe holds: a child left running may write on and on.
                for _ in range(_PIPE_SIZE // _CHUNK + 1):
                    if not pipes.read(r):
                        break
            for r in reads:
                pipes.tails[r] = None


_pipes: _Pipes | None = None
_pipes_lock = threading.Lock()


def _process_pipes() -> _Pipes:
    global _pipes
    pipes = _pipes
    if pipes is not None and pipes.pid == os.getpid():
        return pipes
    with _pipes_lock:
        if _pipes is None or _pipes.pid != os.getpid():  # a forked child has no drainer thread
            _pipes = _Pipes()
        return _pipes


def _dup(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError:
        return -1


_libc: Any = None


def _flush(streams: tuple[Any, ...], c_too: bool = True) -> None:
    """Flush Python streams, then C's stdio buffers, so nothing written is left behind."""
    for stream in streams:
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):  # None, closed, or a broken stream of the task's
            pass
    if not c_too:
        return
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.fflush(None)
    except (OSError, AttributeError):
        _libc = False
