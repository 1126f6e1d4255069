"""Every command that takes an endpoint NAME answers a missing one with the same exit code.

78 (sysexits' EX_CONFIG): no endpoint of that name is configured. No LSB code fits both kinds
of command: for `status` 4 means "status unknown" (gce status keeps it for an endpoint that
exists but cannot say), and for start/stop 4 means "insufficient privilege".
"""

from __future__ import annotations

import pytest

from gce.errors import EX_CONFIG


@pytest.mark.parametrize("command", [["status"], ["stop"], ["start"], ["start", "--detach"], ["restart"],
                                     ["delete", "--yes"]])
def test_no_such_endpoint_is_exit_78_everywhere(gce, home, command):
    result = gce(*command, "nope")
    assert EX_CONFIG == 78
    assert result.exit_code == 78, result.output
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no endpoint named 'nope': {home}/nope/config.yaml does not exist\n"
        "hint: gce list shows the configured endpoints; gce configure nope creates this one\n"
    )
