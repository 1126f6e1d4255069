"""What a task printed reaches its submitter, on every engine: SDK -> broker -> manager -> UEP ->
engine workers -> back (gce.uep.capture)."""

from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
import time

import pytest

from gce.sdk import RemoteExecutionError
from tests.rendezvous import meet

pytestmark = pytest.mark.broker

TAIL = 64 * 1024  # the default limits.max_output_bytes


LINES = 800_000  # of 65 bytes: 52 MB


def line(i: int) -> str:
    return f"line {i:08d} " + "." * 50 + "\n"


def prints_50_mb():
    for start in range(0, LINES, 1000):
        sys.stdout.write("".join(line(i) for i in range(start, start + 1000)))
    subprocess.run(["sh", "-c", "echo x >&2"], check=True)  # a child process's stderr
    return "done"


class Unrebuildable(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args: RemoteExecutionError
        super().__init__(f"{a}-{b}")


def prints_then_fails():
    for i in range(5000):
        print(f"step {i}")
    print("disk quota exceeded", file=sys.stderr)
    raise Unrebuildable(1, 2)


@pytest.mark.parametrize("engine", ["process", "htex"])
def test_50_mb_of_output_completes_and_the_submitter_gets_its_tail(make_endpoint, engine):
    ep = make_endpoint(engine=engine)
    ep.start()
    expected = "".join(line(i) for i in range(LINES - 2000, LINES))[-TAIL:]
    with ep.executor() as ex:
        began = time.monotonic()
        fut = ex.submit(prints_50_mb)
        assert fut.result(timeout=120) == "done"
        output = fut.task_output()
        assert output.stdout == expected and output.stderr == "x\n"
        assert time.monotonic() - began < 60
        failed = ex.submit(prints_then_fails)
        exc = failed.exception(timeout=60)
        assert isinstance(exc, RemoteExecutionError)
        assert exc.stderr == "disk quota exceeded\n" and exc.stdout.endswith("step 4999\n")
        text = str(exc)
        assert "disk quota exceeded" in text and text.endswith("step 4998\nstep 4999") and len(text) < 8192


def prints_for_a_while(tag, mine, other):
    """Half its lines, then it waits for the other task to have printed its half too: both print
    while the other's output is being captured, however long each took to start."""
    met = False
    for i in range(200):
        if i == 100:
            met = meet(mine, other)
        print(f"{tag} {i}")
        print(f"{tag} err {i}", file=sys.stderr)
        time.sleep(0.002)
    return met


def test_thread_engine_tasks_printing_at_once_each_get_their_own_output(make_endpoint, tmp_path):
    ep = make_endpoint(engine="thread")
    ep.start()
    marks = {tag: str(tmp_path / f"printing-{tag}") for tag in ("a", "b")}
    with ep.executor() as ex:
        futs = {tag: ex.submit(prints_for_a_while, tag, marks[tag], marks[other])
                for tag, other in (("a", "b"), ("b", "a"))}
        cf.wait(futs.values(), timeout=120)
        assert [futs[t].result(timeout=60) for t in ("a", "b")] == [True, True]  # they did print at the same time
        for tag, fut in futs.items():
            assert fut.task_output().stdout == "".join(f"{tag} {i}\n" for i in range(200))
            assert fut.task_output().stderr == "".join(f"{tag} err {i}\n" for i in range(200))


def prints_a_little():
    print("hello")
    subprocess.run(["sh", "-c", "echo x >&2"], check=True)
    return 1


def test_capture_off_returns_no_output(make_endpoint):
    ep = make_endpoint(engine="process", limits={"max_output_bytes": 0})
    ep.start()
    with ep.executor() as ex:
        fut = ex.submit(prints_a_little)
        assert fut.result(timeout=60) == 1
        assert (fut.task_output().stdout, fut.task_output().stderr) == ("", "")
