"""gce import: Globus Compute endpoint directories, from the examples its own package ships.

globus-compute-endpoint is downloaded once (cached by version, without its dependencies: only its
files are wanted) and installed into a throwaway venv; its example files make the source
directories. Each import runs against a read-only bind mount of the source, and the source's
tree is hashed before and after: gce import must not write there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from gce.config import model
from gce.config.paths import endpoint_paths

GC_VERSION = "4.19.0"
CACHE = Path(os.environ.get("GCE_TEST_CACHE", "/var/cache/gce-tests")) / "globus-compute-endpoint"
ID = "6f2b5a8e-3c1d-4e7f-9a0b-1c2d3e4f5a6b"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="a read-only bind mount needs root")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of example configurations in an installed globus-compute-endpoint."""
    cache = CACHE / GC_VERSION
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs may download at once
        if not list(cache.glob("*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            "-d", str(cache), f"globus-compute-endpoint=={GC_VERSION}"], check=True, timeout=300)
    wheel = next(cache.glob("*.whl"))
    venv = tmp_path_factory.mktemp("gc-venv")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install", "-q",
                    "--no-deps", "--no-index", "--no-compile", str(wheel)], check=True, timeout=120)
    found = list(venv.glob("lib/python*/site-packages/globus_compute_endpoint/endpoint/config"))
    assert found and (found[0] / "default_config.yaml").is_file(), found
    return found[0]


def tree_hash(root: Path) -> str:
    """Names, modes, times and contents of everything under ROOT."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        h.update(f"{path.relative_to(root)} {st.st_mode:o} {st.st_mtime_ns} {st.st_size}\n".encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """PATH as a read-only bind mount of itself: a write there fails with EROFS, even as root."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def imported(gce, source: Path, *args: str) -> subprocess.CompletedProcess:
    """`gce import SOURCE ARGS` run in-process (parsl's import is paid once) on a read-only SOURCE."""
    before = tree_hash(source)
    with read_only(source):
        result = gce("import", str(source), *args)
    assert tree_hash(source) == before, "gce import changed its source directory"
    return subprocess.CompletedProcess(["gce", "import"], result.exit_code, result.stdout, result.stderr)


def report(proc: subprocess.CompletedProcess) -> list[str]:
    """The lines under "not carried over (N):"."""
    lines = proc.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("not carried over")), None)
    if start is None:
        return []
    assert lines[start] == f"not carried over ({sum(1 for x in lines[start + 1:] if x.startswith('  '))}):"
    return [line.strip() for line in lines[start + 1:] if line.startswith("  ")]


def globus_dir(tmp_path: Path, shipped: Path, name: str, with_mapping: bool = True) -> Path:
    """An endpoint directory as `globus-compute-endpoint configure` writes it, from the shipped files."""
    d = tmp_path / "globus_compute" / name
    d.mkdir(parents=True)
    config = (shipped / "default_config.yaml").read_text()
    for file in ("user_config_template.yaml.j2", "user_config_schema.json", "user_environment.yaml",
                 "example_identity_mapping_config.json"):
        (d / file).write_bytes((shipped / file).read_bytes())
    if with_mapping:
        config += "identity_mapping_config_path: example_identity_mapping_config.json\n"
    (d / "config.yaml").write_text(config)
    (d / "endpoint.json").write_text(json.dumps({"endpoint_id": ID}))
    return d


TEMPLATE = "user_config_template.yaml.j2"
RUNTIME = "undefined in gce (its user_runtime has gce_version, platform, python_version)"


@root_only
def test_the_shipped_examples_become_a_templated_endpoint(gce, home, tmp_path, shipped):
    source = globus_dir(tmp_path, shipped, "mep")
    proc = imported(gce, source)
    assert proc.returncode == 1, proc.stderr
    from gce.config.templating import RENDERED

    taken = sorted(RENDERED["properties"])  # endpoint_setup is one in a gce that runs it
    assert report(proc) == [
        f"{TEMPLATE}: idle_heartbeats_hard: gce does not stop a user endpoint that has work; give tasks a time "
        "limit instead",
        *([] if "endpoint_setup" in taken else
          [f"{TEMPLATE}: endpoint_setup: gce's user endpoint config takes only {', '.join(taken)}"]),
        f"{TEMPLATE}: user_runtime.python: {RUNTIME}",
        f"{TEMPLATE}: user_runtime.globus_compute_sdk_version: {RUNTIME}",
    ]
    paths = endpoint_paths("mep")
    config = model.load(paths)  # valid as gce reads it
    assert (config.endpoint_id, config.multi_user, config.idle_timeout) == (ID, True, 300.0)  # 10 heartbeats of 30 s
    assert config.identity_mapping_config_path == str(paths.config_dir / "identity_mapping.json")
    assert json.loads(Path(config.identity_mapping_config_path).read_text()) == \
        json.loads((shipped / "example_identity_mapping_config.json").read_text())
    assert (paths.config_dir / "user_config_schema.json").read_bytes() == (shipped / "user_config_schema.json").read_bytes()
    assert (paths.config_dir / "user_environment.yaml").read_bytes() == (shipped / "user_environment.yaml").read_bytes()
    values = tmp_path / "values.json"
    values.write_text('{"worker_init": "echo hi"}')
    rendered = gce("render-user-config", "mep", "--user-config", str(values))
    assert rendered.exit_code == 0, rendered.stderr
    engine = yaml.safe_load(rendered.stdout)["engine"]
    assert engine["type"] == "HighThroughputEngine" and engine["provider"]["type"] == "LocalProvider"
    assert "echo -e \"echo hi\"" in engine["provider"]["worker_init"]  # the template's own use of it
    assert oct(paths.config_file.stat().st_mode & 0o777) == oct(0o600)  # it will hold the broker password


@root_only
def test_the_shipped_default_config_alone(gce, home, tmp_path, shipped):
    source = tmp_path / "bare"
    source.mkdir()
    (source / "config.yaml").write_bytes((shipped / "default_config.yaml").read_bytes())
    proc = imported(gce, source, "plain")
    assert proc.returncode == 1
    assert report(proc) == [f"{TEMPLATE}: the source has none; gce's default template and schema are used"]
    config = model.load(endpoint_paths("plain"))
    assert config.multi_user and config.display_name == "plain"  # gce shows the name when there is none


PERSONAL = {
    "display_name": "Laptop endpoint",
    "amqp_port": 443,
    "heartbeat_period": 15,
    "idle_heartbeats_soft": 0,
    "allowed_functions": ["4b116d3c-1703-4f8f-9f6f-39921e5864df"],
    "debug": True,
    "engine": {
        "type": "GlobusComputeEngine",
        "max_workers": 2,
        "encrypted": False,
        "label": "laptop",
        "job_status_kwargs": {"strategy_period": 0.5, "max_idletime": 30, "monitoring_hub": None},
        "address": {"type": "address_by_interface", "ifname": "lo"},
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1,
                     "worker_init": "true", "channel": {"type": "LocalChannel"},
                     "launcher": {"type": "WrappedLauncher", "prepend": "time"}},
    },
}


@root_only
def test_a_personal_endpoint_lists_each_setting_left_out(gce, home, tmp_path):
    source = tmp_path / "laptop"
    source.mkdir()
    (source / "config.yaml").write_text(yaml.safe_dump(PERSONAL))
    (source / "endpoint.json").write_text(json.dumps({"endpoint_id": ID}))
    proc = imported(gce, source)
    assert proc.returncode == 1, proc.stderr
    lines = report(proc)
    assert lines[:3] == [
        "engine.job_status_kwargs.monitoring_hub: gce's engine takes max_idletime and strategy_period",
        "engine.address: gce takes the address as a string, not a function to call: write this host's address "
        "for the workers to reach",
        "engine.label: gce sets it itself",
    ]
    assert lines[3].startswith("engine.provider.channel: LocalProvider has no option 'channel' (it takes: ")
    assert lines[4:] == [
        "engine.provider.launcher: gce has no WrappedLauncher (it has SingleNodeLauncher, SrunLauncher, "
        "AprunLauncher, MpiExecLauncher, SimpleLauncher); the provider's default launcher is used",
        "allowed_functions: its ids name functions registered with Globus Compute's web service; gce's are the "
        "sha256 of the function: list those of the functions to allow",
        "amqp_port: gce connects to its own broker, whose port is part of broker.url",
        "idle_heartbeats_soft: a personal gce endpoint runs until it is stopped",
    ]
    data = yaml.safe_load(endpoint_paths("laptop").config_file.read_text())
    assert data["engine"] == {
        "type": "HighThroughputEngine", "encrypted": False, "strategy_period": 0.5, "max_idletime": 30,
        "max_workers_per_node": 2,
        "provider": {"type": "LocalProvider", "init_blocks": 1, "min_blocks": 0, "max_blocks": 1, "worker_init": "true"},
    }
    assert (data["display_name"], data["status_period"], data["debug"]) == ("Laptop endpoint", 15, True)
    text = endpoint_paths("laptop").config_file.read_text()
    assert "#   amqp_port: gce connects to its own broker" in text  # the file says what was left out, too


@root_only
def test_everything_carried_over_exits_0_and_an_existing_endpoint_is_refused(gce, home, tmp_path):
    source = tmp_path / "threads"
    source.mkdir()
    (source / "config.yaml").write_text(yaml.safe_dump(
        {"display_name": "T", "engine": {"type": "ThreadPoolEngine", "max_workers": 3}}))
    proc = imported(gce, source)
    assert (proc.returncode, report(proc)) == (0, []), proc.stdout + proc.stderr
    paths = endpoint_paths("threads")
    written = {p.name: p.read_bytes() for p in paths.config_dir.iterdir()}
    again = imported(gce, source)
    assert again.returncode == 73
    assert again.stderr.startswith("error: endpoint 'threads' already exists: ")
    assert {p.name: p.read_bytes() for p in paths.config_dir.iterdir()} == written


def test_the_source_must_be_an_endpoint_directory(gce, tmp_path):
    result = gce("import", str(tmp_path))
    assert result.exit_code == 64, result.stderr
    assert result.stderr.startswith(f"error: cannot import {tmp_path}: it holds no config.yaml")


@root_only
def test_an_imported_endpoint_runs_a_task(gce, gce_bin, home, tmp_path, broker):
    from tests.endpoint import processes_under, wait_until

    source = tmp_path / "laptop"
    source.mkdir()
    # A process pool starts in a second where parsl's HTEX takes ten on a busy machine; the HTEX
    # conversion is checked against parsl's own signatures above.
    config = {**PERSONAL, "engine": {"type": "ProcessPoolEngine", "max_workers": 1, "label": "pool"}}
    (source / "config.yaml").write_text(yaml.safe_dump(config))
    (source / "endpoint.json").write_text(json.dumps({"endpoint_id": ID}))
    endpoint_url, urls = broker.provision(ID, users=["alice"])
    url_file = tmp_path / "url"
    url_file.write_text(endpoint_url + "\n")
    url_file.chmod(0o600)
    assert imported(gce, source, "--broker-url-file", str(url_file)).returncode == 1
    started = gce_bin("start", "laptop", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        from gce.sdk import Executor

        with Executor(endpoint_id=ID, broker_url=urls["alice"]) as ex:
            assert ex.submit(pow, 2, 10).result(timeout=60) == 1024
    finally:
        assert gce_bin("stop", "laptop").returncode == 0
    wait_until(lambda: not processes_under(home), timeout=20)
