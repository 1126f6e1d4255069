"""The spinner of slow commands, on a real terminal (a pty driven by pexpect) and off one.

`gce broker provision` runs rabbitmqctl; a stand-in that takes a second and then fails makes
its first step slow without a broker. A step shows once it has lasted half a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from gce import output

GCE = str(Path(sys.executable).parent / "gce")
STEP = "reading the broker's accounts and grants"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("GCE_") and k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    env = {**keep, "GCE_HOME": str(tmp_path / "gce-home"), "TERM": "xterm-256color", "NO_COLOR": "1"}
    subprocess.run([GCE, "configure", "demo", "--broker-url", "amqp://ep@127.0.0.1:1/gce", "--engine", "thread"],
                   env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return env


def slow_rabbitmqctl(tmp_path: Path, seconds: float) -> str:
    """A rabbitmqctl that answers after SECONDS that the broker is down."""
    script = tmp_path / "rabbitmqctl"
    script.write_text(f"#!/bin/sh\nsleep {seconds}\necho 'Error: unable to perform an operation on node' >&2\nexit 69\n")
    script.chmod(0o755)
    return str(script)


def provision_on_a_terminal(env: dict[str, str], ctl: str) -> tuple[str, int]:
    child = pexpect.spawn(GCE, ["broker", "provision", "--endpoint", "demo", "--rabbitmqctl", ctl],
                          env=env, encoding="utf-8", timeout=30, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


def test_a_slow_step_shows_a_spinner_naming_it_on_a_terminal(env, tmp_path):
    shown, status = provision_on_a_terminal(env, slow_rabbitmqctl(tmp_path, 1.5))
    assert STEP in shown
    assert any(frame in shown for frame in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), shown  # it spins, not just a line
    assert "error: no RabbitMQ node answered rabbitmqctl" in shown  # the error still reads as without a spinner
    assert status == 69


def test_a_quick_step_shows_nothing(env, tmp_path):
    shown, status = provision_on_a_terminal(env, slow_rabbitmqctl(tmp_path, 0))
    assert STEP not in shown
    assert "error: no RabbitMQ node answered rabbitmqctl" in shown
    assert status == 69


def test_no_spinner_when_output_is_piped(env, tmp_path):
    proc = subprocess.run([GCE, "broker", "provision", "--endpoint", "demo", "--rabbitmqctl",
                           slow_rabbitmqctl(tmp_path, 1.5)],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 69
    assert "error: no RabbitMQ node answered rabbitmqctl" in proc.stderr
    assert STEP not in proc.stdout + proc.stderr
    assert "\x1b[" not in proc.stdout + proc.stderr  # no cursor movement either


def python_on_a_terminal(code: str, env: dict[str, str]) -> tuple[str, int]:
    """(what a terminal showed, exit status) of python -c CODE on a real pty."""
    child = pexpect.spawn(sys.executable, ["-c", code], env=env, encoding="utf-8", timeout=30, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    return child.before, child.exitstatus


def test_a_line_printed_during_a_slow_step_is_not_written_over_the_spinner(env):
    # rich redirects only writes made through the spinner's own console; gce prints through others
    code = ("import time\nfrom gce import output\n"
            "with output.spinner('waiting') as step:\n"
            "    time.sleep(0.8)\n    output.success('endpoint demo started')\n"
            "    step('checking')\n    time.sleep(0.8)\n"
            "output.line('done')\n")
    screen, status = python_on_a_terminal(code, env)
    assert "waiting" in screen and "checking" in screen  # the spinner came back for the next slow step
    # each printed line starts on a cleared line, never after a spinner frame
    assert "\x1b[2Kendpoint demo started\r\n" in screen, screen
    assert "\x1b[2Kdone\r\n" in screen, screen
    assert status == 0


def test_a_spinner_inside_another_names_its_step_on_the_same_line(env):
    # gce restart shows its steps; the start it ends with may show its own
    code = ("import time\nfrom gce import output\n"
            "with output.spinner('stopping') as step:\n"
            "    time.sleep(0.8)\n"
            "    with output.spinner('starting'):\n        time.sleep(0.8)\n")
    shown, status = python_on_a_terminal(code, env)
    assert "stopping" in shown and "starting" in shown
    # two spinners would take turns on the line: once the inner step began, only it shows
    assert "stopping" not in shown[shown.index("starting"):], shown
    assert status == 0


def test_start_detach_names_its_step_while_the_manager_comes_up(env):
    import socket

    with socket.socket() as silent:  # a "broker" that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"amqp://ep:pw@127.0.0.1:{silent.getsockname()[1]}/gce"
        subprocess.run([GCE, "configure", "slow", "--broker-url", url, "--engine", "thread"],
                       env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        child = pexpect.spawn(GCE, ["start", "slow", "--detach", "--timeout", "3"], env=env, encoding="utf-8",
                              timeout=60, dimensions=(24, 120))
        child.expect("starting endpoint slow")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus != 0 and "error: " in child.before


def test_tables_lines_and_errors_print_user_text_without_escape_sequences(capsys):
    """A reason, a name or a log line a user controls cannot retitle the terminal or hide text:
    rich drops some control characters, not ESC, so gce.output takes the sequences out."""
    from gce.errors import GceError

    hostile = "a\x1b]0;pwned\x07b\x1b[2Jc[bold red]x[/]"
    output.table(["NAME"], [[hostile]])
    output.line(hostile)
    output.error(GceError(hostile, hostile))
    out, err = capsys.readouterr()
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text and "pwned" not in text
        assert "abc[bold red]x[/]" in text
