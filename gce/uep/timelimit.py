"""A task's time limit, kept by the worker that runs it.

The limit (a task's ``walltime``, or its Executor's ``task_timeout``) interrupts the function with
``TaskTimedOut``, a BaseException so that the function's own ``except Exception`` does not take it.

- On a worker's main thread (a process pool's workers, parsl's workers: processes of their own)
  SIGALRM delivers it. A function that swallows it, or sits in C code that never returns to the
  interpreter, is stopped ``GRACE`` seconds later by a kernel timer that sends its process SIGKILL:
  no Python thread could do that for code that holds the GIL. The engine sees the worker die and
  the user endpoint, knowing the task's limit had passed, answers TIMEOUT.
- On any other thread (ThreadPoolEngine runs tasks as threads of the user endpoint) a timer
  raises it in that thread (PyThreadState_SetAsyncExc, as parsl's ``timeout`` decorator does). It
  lands when the thread next runs Python code: not inside a C call such as a long ``time.sleep``.
  A thread cannot be killed: the user endpoint answers TIMEOUT itself at the limit plus a grace
  period (gce.uep.deadlines) and leaves a thread that swallowed it, or is still in C, behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

# A limit longer than this (over three years) is no limit: the clocks that keep it could not hold it.
LONGEST = 1e8
# Seconds a process worker's function has, past its limit, to let TaskTimedOut end it before its
# process is killed.
GRACE = 1.0


class TaskTimedOut(BaseException):
    seconds: float = 0.0  # a subclass raised in a thread (an exception class, not an instance) sets it

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None:
            self.seconds = seconds
        super().__init__(f"the task ran past its time limit of {self.seconds:g} s and was stopped")


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Run the body for at most SECONDS (None: no limit)."""
    if not seconds or seconds > LONGEST:
        yield
    elif threading.current_thread() is threading.main_thread():
        with _kill_after(seconds + GRACE), _alarm(seconds):
            yield
    else:
        with _interrupt_thread(seconds):
            yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: Any) -> None:
        raise TaskTimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the process's end: a POSIX timer whose expiry is SIGKILL, sent by the kernel --------------
class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigevent(ctypes.Structure):  # struct sigevent of Linux: 64 bytes, SIGEV_SIGNAL uses the first 16
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int), ("sigev_notify", ctypes.c_int),
                ("_pad", ctypes.c_byte * 48)]


CLOCK_MONOTONIC = 1
SIGEV_SIGNAL = 0


def _kernel_killer(seconds: float) -> Any:
    """A timer_create(2) timer that sends this process SIGKILL in SECONDS; None where there is none."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timer = ctypes.c_void_p()
        event = _Sigevent(sigev_signo=signal.SIGKILL, sigev_notify=SIGEV_SIGNAL)
        if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            return None
        whole = int(seconds)
        when = _Itimerspec(it_value=_Timespec(whole, int((seconds - whole) * 1e9)))
        if libc.timer_settime(timer, 0, ctypes.byref(when), None) != 0:
            libc.timer_delete(timer)
            return None
        return lambda: libc.timer_delete(timer)
    except (OSError, AttributeError):
        return None


@contextmanager
def _kill_after(seconds: float) -> Iterator[None]:
    disarm = _kernel_killer(seconds)
    if disarm is None:  # no POSIX timers: a thread does it, for code that lets it have the GIL
        done = threading.Event()

        def watch() -> None:
            if not done.wait(seconds):
                os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="gce-time-limit", daemon=True).start()
        disarm = done.set
    try:
        yield
    finally:
        disarm()


# -- a thread's interruption ---------------------------------------------------------------------
def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise EXC in thread THREAD_ID at its next bytecode; None clears one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc is not None else None)


@contextmanager
def _interrupt_thread(seconds: float) -> Iterator[None]:
    # The exception is raised as a class, instantiated without arguments: a subclass carries the limit.
    timed_out = type("TaskTimedOut", (TaskTimedOut,), {"seconds": seconds, "__module__": __name__})
    target = threading.get_ident()
    lock = threading.Lock()
    done = threading.Event()

    def interrupt() -> None:
        # Once only: if it lands while the body is being left, before the cleanup below runs, it
        # ends the task as TIMEOUT all the same, and nothing is left to land in the thread later.
        if not done.wait(seconds):
            with lock:  # never into a thread that has left the body (and may run another task)
                if not done.is_set():
                    _raise_in(target, timed_out)

    threading.Thread(target=interrupt, name="gce-time-limit", daemon=True).start()
    try:
        yield
    finally:
        _end_interruptions(target, lock, done)


def _end_interruptions(target: int, lock: threading.Lock, done: threading.Event) -> None:
    # A TaskTimedOut raised while the body ends (the limit passed just then) would escape here:
    # it is dropped, the body's own outcome stands, and no other one can come once DONE is set.
    while True:
        try:
            with lock:
                done.set()
                if threading.get_ident() == target:  # not a generator closed later by another thread
                    _raise_in(target, None)
            return
        except TaskTimedOut:
            continue
