"""gce version: which product, how it was installed, and the versions of Python and libraries."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import gce

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCT = "gce, the self-hosted function-as-a-service endpoint; not Globus Compute"
# gce as a given prefix sees it: packaged.json is looked for in sys.prefix, read when the command runs.
RUN_WITH_PREFIX = ("import sys; sys.prefix = sys.argv.pop(1); sys.path.insert(0, sys.argv.pop(1)); "
                   "from gce.cli import main; sys.argv[0] = 'gce'; main()")


def test_version(gce, home):
    result = gce("version")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout == (
        f"gce {gce_version()} ({PRODUCT})\n"
        f"Run from the source checkout {ROOT}\n"
        f"Python {platform.python_version()} ({sys.executable})\n"
        f"parsl {metadata.version('parsl')}, pika {metadata.version('pika')}, "
        f"cloudpickle {metadata.version('cloudpickle')}\n"
    )


def test_version_json(gce, home):
    data = json.loads(gce("version", "--json").stdout)
    assert data == {
        "gce": gce_version(), "python": platform.python_version(), "parsl": metadata.version("parsl"),
        "pika": metadata.version("pika"), "cloudpickle": metadata.version("cloudpickle"),
        "product": PRODUCT, "installed_from": "source", "location": str(ROOT),
        "python_executable": sys.executable, "platform": platform.platform(),
    }


def test_version_as_a_real_process(gce_bin):
    proc = gce_bin("version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"gce {gce_version()} ({PRODUCT})\nRun from the source checkout {ROOT}\n"
                                  f"Python {platform.python_version()} (")


def _run(prefix: Path, path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RUN_WITH_PREFIX, str(prefix), str(path), *args],
                          capture_output=True, text=True, timeout=60, cwd="/",
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def test_a_package_says_so(tmp_path: Path, home):
    for kind, env_file in (("deb", "/etc/default/gce"), ("rpm", "/etc/sysconfig/gce")):
        prefix = tmp_path / kind
        prefix.mkdir()
        (prefix / "packaged.json").write_text(json.dumps({
            "kind": kind, "version": "9.9", "environment_file": env_file,
            "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}))
        proc = _run(prefix, ROOT, "version")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout.splitlines()[:2] == [f"gce {gce_version()} ({PRODUCT})",
                                                f"Installed from the .{kind} package, in {prefix}"]
        data = json.loads(_run(prefix, ROOT, "version", "--json").stdout)
        assert (data["product"], data["installed_from"], data["location"]) == (PRODUCT, kind, str(prefix))


def test_pip_installed_says_where(tmp_path: Path, home):
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "gce", site / "gce", ignore=shutil.ignore_patterns("__pycache__"))
    proc = _run(tmp_path / "env", site, "version", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["installed_from"], data["location"]) == ("pip", str(tmp_path / "env"))


def test_a_broken_packaged_json_is_named(tmp_path: Path, home):
    (tmp_path / "packaged.json").write_text("{not json")
    proc = _run(tmp_path, ROOT, "version")
    assert proc.returncode == 64
    assert proc.stderr.startswith(f"error: cannot read {tmp_path / 'packaged.json'}: ")
    assert "hint: reinstall the gce package" in proc.stderr


def gce_version() -> str:
    return gce.__version__
