"""What a task printed comes back with its result (gce.uep.capture, used by gce.uep.execute.run_task).

run_task called on a thread's main thread captures at the file-descriptor level, as on a process
worker; called on another thread, per thread, as on a ThreadPoolEngine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import cloudpickle

from gce.sdk import serialize
from gce.transport.payload import unpack_result
from gce.uep.capture import Tail
from gce.uep.execute import run_task
from tests.rendezvous import meet


def _run(fn, *args, output=64 * 1024, time_limit=None):
    kind, blob = serialize.serialize_function(fn)
    payload = serialize.pack_task(kind, blob, serialize.serialize_args(args, {}))
    return unpack_result(run_task(payload, 10 * 1024 * 1024, output, time_limit))


def _fd_identity(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def prints_everywhere():
    print("python stdout")
    print("python stderr", file=sys.stderr)
    sys.stdout.buffer.write(b"bytes stdout\n")
    os.write(1, b"fd stdout\n")
    os.write(2, b"fd stderr\n")
    subprocess.run(["sh", "-c", "echo child stdout; echo x >&2"], check=True)
    return 7


def test_python_fd_and_child_process_output_come_back_on_a_process_worker():
    result = _run(prints_everywhere)
    assert result.ok
    # sys.stdout is block-buffered, as Python makes it when its output is no terminal: across the
    # layers the order may differ; sys.stderr is line-buffered.
    assert sorted(result.stdout.splitlines()) == ["bytes stdout", "child stdout", "fd stdout", "python stdout"]
    assert result.stderr == "python stderr\nfd stderr\nx\n"


def test_50_mb_of_output_completes_and_only_its_tail_comes_back():
    def chatty():
        line = "0123456789abcdef" * 4 + "\n"  # 65 bytes
        for i in range(50_000_000 // 65 // 1000 + 1):
            sys.stdout.write(line * 1000)
        print("the end")
        os.write(2, b"e" * 3_000_000)
        return "done"

    began = time.monotonic()
    result = _run(chatty)
    assert time.monotonic() - began < 30
    assert result.ok and len(result.stdout) == 64 * 1024 and len(result.stderr) == 64 * 1024
    assert result.stdout.endswith("0123456789abcdef\nthe end\n")
    assert result.stderr == "e" * 64 * 1024


def test_capture_off_returns_no_output_and_leaves_the_streams_alone(capfd):
    result = _run(prints_everywhere, output=0)
    assert result.ok and result.stdout == "" and result.stderr == ""
    out, err = capfd.readouterr()
    assert "python stdout" in out and "fd stdout" in out and "x\n" in err


def test_the_streams_are_restored_after_an_exception_sys_exit_and_a_time_limit():
    def boom():
        print("before the error")
        raise ValueError("no")

    def leaves():
        print("bye", file=sys.stderr)
        sys.exit(3)

    def sleeps():
        print("still here")
        time.sleep(30)

    before = (_fd_identity(1), _fd_identity(2), sys.stdout, sys.stderr)
    failed = _run(boom)
    assert failed.code == "TASK_EXCEPTION" and failed.stdout == "before the error\n"
    exited = _run(leaves)
    assert exited.code == "TASK_EXCEPTION" and exited.stderr == "bye\n"
    timed_out = _run(sleeps, time_limit=0.3)
    assert timed_out.code == "TIMEOUT" and timed_out.stdout == "still here\n"
    assert (_fd_identity(1), _fd_identity(2), sys.stdout, sys.stderr) == before


def test_threads_each_get_only_their_own_output(tmp_path):
    def prints(tag, mine, other):
        # Half its lines, then it waits for the other task to have printed its half too: both
        # print while the other's output is being captured, however the threads are scheduled.
        for i in range(300):
            if i == 150:
                met = meet(mine, other)
            print(f"{tag} {i}")
            print(f"{tag} err {i}", file=sys.stderr)
            time.sleep(0.001)  # let the other thread print in between
        return met

    results = {}
    original = (sys.stdout, sys.stderr)
    marks = {t: str(tmp_path / t) for t in ("a", "b")}
    threads = [threading.Thread(target=lambda t=t, o=o: results.__setitem__(t, _run(prints, t, marks[t], marks[o])))
               for t, o in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [cloudpickle.loads(results[t].value) for t in ("a", "b")] == [True, True]  # they did print at once
    for tag in ("a", "b"):
        assert results[tag].stdout == "".join(f"{tag} {i}\n" for i in range(300))
        assert results[tag].stderr == "".join(f"{tag} err {i}\n" for i in range(300))
    assert (sys.stdout, sys.stderr) == original  # the per-thread dispatcher is gone again


def test_a_tail_keeps_the_last_bytes_and_never_starts_inside_a_character():
    tail = Tail(10)
    for _ in range(100):
        tail.add(b"0123456789")
    tail.add(b"abc")
    assert tail.value() == b"3456789abc"
    text = Tail(4)
    text.add_text("xé" * 10)
    assert text.value().decode() == "xé"  # its last 4 bytes start inside an "é"
    assert Tail(5).value() == b""


def test_a_task_that_closes_its_streams_harms_neither_the_worker_nor_the_next_task():
    def closes_everything():
        print("last words")
        sys.stdout.close()
        os.close(1)
        os.close(2)

    before = (_fd_identity(1), _fd_identity(2), sys.stdout, sys.stderr)
    assert _run(closes_everything).stdout == "last words\n"
    assert (_fd_identity(1), _fd_identity(2), sys.stdout, sys.stderr) == before
    assert _run(prints_everywhere).stderr == "python stderr\nfd stderr\nx\n"
