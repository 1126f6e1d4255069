"""What a task prints when it runs on a thread other than a process's main one (ThreadPoolEngine
runs tasks as threads of the user endpoint), kept for gce.uep.capture.

fd 1 and fd 2 are shared by every task there, so sys.stdout and sys.stderr become dispatchers that
send each task thread's writes to its own tails, and anyone else's to the stream they replaced.
What C code, a child process or a thread the task started writes goes to the user endpoint's own
output (its log), not to the task. The streams are put back once no task runs.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Protocol


class Tail(Protocol):  # gce.uep.capture.Tail, which imports this module
    def add(self, data: bytes) -> None: ...

    def add_text(self, text: str) -> None: ...

_local = threading.local()
_dispatch_lock = threading.Lock()
_dispatching = 0


class _BinaryTail:
    def __init__(self, tail: Tail) -> None:
        self._tail = tail

    def write(self, data: bytes) -> int:
        self._tail.add(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class _PerThread:
    """sys.stdout or sys.stderr while tasks run as threads: a task thread's writes go to its tail,
    anyone else's to the stream it replaced."""

    def __init__(self, original: Any, name: str) -> None:
        self._original = original
        self._name = name  # "out" or "err"

    def _tail(self) -> Tail | None:
        return getattr(_local, self._name, None)

    def write(self, text: str) -> int:
        tail = self._tail()
        if tail is not None:
            tail.add_text(text)
            return len(text)
        return self._original.write(text) if self._original is not None else len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._tail() is None and self._original is not None:
            self._original.flush()

    def isatty(self) -> bool:
        return self._tail() is None and self._original is not None and self._original.isatty()

    @property
    def buffer(self) -> Any:
        tail = self._tail()
        return _BinaryTail(tail) if tail is not None else self._original.buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


@contextmanager
def per_thread(out: Tail, err: Tail) -> Iterator[None]:
    global _dispatching
    with _dispatch_lock:
        if _dispatching == 0:
            for name, tail_name in (("stdout", "out"), ("stderr", "err")):
                current = getattr(sys, name)
                if not isinstance(current, _PerThread):
                    setattr(sys, name, _PerThread(current, tail_name))
        _dispatching += 1
    _local.out, _local.err = out, err
    try:
        yield
    finally:
        _local.out = _local.err = None
        with _dispatch_lock:
            _dispatching -= 1
            if _dispatching == 0:  # no task runs: the streams are what they were
                for name in ("stdout", "stderr"):
                    current = getattr(sys, name)
                    if isinstance(current, _PerThread):
                        setattr(sys, name, current._original)
