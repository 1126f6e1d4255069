"""Fixtures for the command tests: a private GCE_HOME, the CLI in-process and as a real program."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from typer.testing import CliRunner, Result

from gce.cli import app
from gce.config.paths import EndpointPaths, endpoint_paths

GCE_BIN = Path(sys.executable).parent / "gce"
_CLEAN = ("GCE_ENDPOINT_BROKER_URL", "GCE_BROKER_URL", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "GCE_DEBUG",
          "TERM", "TTY_COMPATIBLE")


@pytest.fixture
def home(gce_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GCE_HOME in a tmp dir, and none of the variables that change gce's output."""
    for var in _CLEAN:
        monkeypatch.delenv(var, raising=False)
    return gce_home


@pytest.fixture
def gce(home: Path) -> Callable[..., Result]:
    """Run gce in-process: gce("list", "--json") -> Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env=env)

    return run


@pytest.fixture
def gce_bin(home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the installed gce entry point as a real process."""

    def run(*args: str, env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL
            ) -> subprocess.CompletedProcess:
        return subprocess.run([str(GCE_BIN), *args], capture_output=True, text=True, timeout=60,
                              stdin=stdin, env={**os.environ, **(env or {})})

    return run


@pytest.fixture
def configured(gce: Callable[..., Result]) -> Callable[..., EndpointPaths]:
    """Configure an endpoint through `gce configure`; returns its paths."""

    def make(name: str = "demo", *args: str) -> EndpointPaths:
        result = gce("configure", name, "--max-workers", "2", *args)
        assert result.exit_code == 0, result.stderr
        return endpoint_paths(name)

    return make


@pytest.fixture
def on_broker(broker, configured: Callable[..., EndpointPaths]) -> Callable[..., tuple[EndpointPaths, str, dict]]:
    """Configure an endpoint through `gce configure` and put a fresh account of the session broker
    in place of the placeholder URL it writes: (paths, the endpoint's URL, {user: URL} of USERS)."""
    import json

    from gce.config.schema import PLACEHOLDER_BROKER_URL
    from gce.config.writer import yaml_str

    def make(name: str, *args: str, users: tuple[str, ...] = ()) -> tuple[EndpointPaths, str, dict]:
        paths = configured(name, *args)
        endpoint_id = json.loads(paths.endpoint_json.read_text())["endpoint_id"]
        url, user_urls = broker.provision(endpoint_id, users=list(users))
        text = paths.config_file.read_text()
        placeholder = f"url: {yaml_str(PLACEHOLDER_BROKER_URL)}"
        assert placeholder in text, text
        paths.config_file.write_text(text.replace(placeholder, f"url: {yaml_str(url)}"))
        return paths, url, user_urls

    return make
