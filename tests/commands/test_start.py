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


def test_start_warns_that_others_may_read_the_broker_password(gce_bin, home):
    paths = unreachable("loose")
    paths.config_file.chmod(0o644)
    run = gce_bin("start", "loose", "--detach", "--timeout", "30", env={"NO_COLOR": "1"})
    lines = run.stderr.splitlines()
    assert run.returncode == 69, run.stderr
    assert lines[:2] == [
        f"warning: {paths.config_file} holds the broker password and others may read it (mode 0644)",
        f"hint: chmod go-rwx {paths.config_dir} {paths.config_file}",
    ]
    assert lines[2].startswith("error: endpoint 'loose' failed to start: cannot connect to the broker at ")


def test_no_warning_for_a_readable_config_without_a_password(gce_bin, home):
    paths = unreachable("nopassword")
    paths.config_file.write_text(paths.config_file.read_text().replace(":pw-nopassword-123@", "@"))
    paths.config_file.chmod(0o644)
    run = gce_bin("start", "nopassword", "--detach", "--timeout", "30", env={"NO_COLOR": "1"})
    assert run.returncode != 0
    assert run.stderr.startswith("error: endpoint 'nopassword' failed to start: "), run.stderr
    assert not [ln for ln in run.stderr.splitlines() if ln.startswith("warning: ")]
