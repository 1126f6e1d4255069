"""gce version."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

import gce


def test_version(gce, home):
    result = gce("version")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == (
        f"gce {gce_version()}\n"
        f"Python {platform.python_version()} ({sys.executable})\n"
        f"parsl {metadata.version('parsl')}, pika {metadata.version('pika')}, "
        f"cloudpickle {metadata.version('cloudpickle')}\n"
    )


def test_version_json(gce, home):
    data = json.loads(gce("version", "--json").stdout)
    assert data == {
        "gce": gce_version(), "python": platform.python_version(), "parsl": metadata.version("parsl"),
        "pika": metadata.version("pika"), "cloudpickle": metadata.version("cloudpickle"),
        "python_executable": sys.executable, "platform": platform.platform(),
    }


def test_version_as_a_real_process(gce_bin):
    proc = gce_bin("version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"gce {gce_version()}\nPython {platform.python_version()} (")


def gce_version() -> str:
    return gce.__version__
