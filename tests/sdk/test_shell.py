"""ShellFunction runs where it is called (here: locally) and pickles by reference."""

from __future__ import annotations

import time

import cloudpickle
import pytest

from gce.sdk import ShellFunction, ShellResult


def test_formats_runs_and_captures():
    r = ShellFunction("echo {x}; echo err >&2; exit 3")(x=5)
    assert r == ShellResult(3, "5\n", "err\n", "echo 5; echo err >&2; exit 3") and str(r) == "5\n"


def test_walltime_kills_the_command_and_its_children():
    start = time.monotonic()
    r = ShellFunction("sleep 30 & sleep 30", walltime=0.5)()
    assert r.returncode == 124 and "walltime of 0.5 s" in r.stderr
    assert time.monotonic() - start < 10


def test_snippet_lines_keeps_the_tail():
    assert ShellFunction("seq 1 10", snippet_lines=2)().stdout == "9\n10\n"


def test_round_trips_through_cloudpickle():
    f = cloudpickle.loads(cloudpickle.dumps(ShellFunction("echo {a}-{b}")))
    assert f(a=1, b=2).stdout == "1-2\n" and f.__name__ == "ShellFunction"


def test_an_empty_command_is_refused():
    with pytest.raises(ValueError):
        ShellFunction("  ")
