"""gce start as a real process: what a failed start shows, and the warnings before it starts."""

from __future__ import annotations

import re

from tests.commands.test_diagnostic import unreachable


def test_a_refused_connection_shows_no_pika_echoes_and_a_hint_for_the_cause(gce_bin, home):
    paths = unreachable("nobroker")
    run = gce_bin("start", "nobroker", "--detach", "--timeout", "30", env={"NO_COLOR": "1"})
    lines = run.stderr.splitlines()
    assert (run.returncode, run.stdout) == (69, ""), run.stderr
    assert lines[0].startswith("error: endpoint 'nobroker' failed to start: cannot connect to the broker at ")
    assert lines[0].endswith(": connection refused")
    header = [ln for ln in lines if ln.startswith("last lines of ")]
    assert len(header) == 1
    assert re.fullmatch(rf"last lines of {re.escape(str(paths.log_file))} \([1-9]\d* lines of pika, the AMQP "
                        r"library, left out: they repeat the cause above\):", header[0])
    shown = lines[lines.index(header[0]) + 1:-1]
    assert shown and not [ln for ln in shown if " pika." in ln]
    assert any(ln.endswith("gce.daemon: start-up failed: " + lines[0].split("failed to start: ", 1)[1])
               for ln in shown)
    assert lines[-1] == (f"hint: is the broker running, and is its address in {paths.config_file} right? "
                         f"gce diagnostic --endpoint nobroker checks the way there; then gce start nobroker --detach "
                         f"(full log: {paths.log_file})")
