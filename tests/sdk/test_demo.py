"""The demo new users run first: against a real endpoint, in its own process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.broker


def test_the_demo_passes_all_four_checks(sdk_broker, gce_home):
    out = subprocess.run([sys.executable, "-m", "gce.sdk.demo", sdk_broker.endpoint_id, "--broker-url",
                          sdk_broker.user_url, "--timeout", "60", "--pi-tasks", "100", "--pi-points", "2000"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Hello from " in out.stdout and "100/100 products correct" in out.stdout
    assert "pi ≈ 3.1" in out.stdout and "in divide" in out.stdout and "4/4 checks passed" in out.stdout
    assert "online" in out.stdout


def test_the_demo_fails_clearly_on_an_unknown_endpoint(sdk_broker, gce_home):
    out = subprocess.run([sys.executable, "-m", "gce.sdk.demo", sdk_broker.unstarted_endpoint_id, "--broker-url",
                          sdk_broker.user_url, "--timeout", "20"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "has no task queue on this broker" in out.stdout and "0/4 checks passed" in out.stdout
