"""Usage lines name arguments as the help and man pages do: NAME, not {NAME}."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gce.cli import app


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, cmd in group.commands.items():
        found.append(path + (name,))
        if hasattr(cmd, "commands"):  # a group (typer carries its own click)
            found += _commands(cmd, path + (name,))
    return found


ALL = _commands(typer.main.get_command(app))


def test_every_command_is_walked():
    assert {("status",), ("stop",), ("broker", "provision"), ("idmap", "test")} <= set(ALL)


@pytest.mark.parametrize("path", ALL, ids=" ".join)
def test_usage_line_has_no_braces(path, gce_home):
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="gce")
    assert result.exit_code == 0, result.output
    usage = result.stdout.split("\n\n", 1)[0]
    assert usage.startswith(f"Usage: gce {' '.join(path)} ")
    assert "{" not in usage and "}" not in usage, usage


def test_the_usage_of_a_missing_argument(gce_home):
    result = CliRunner().invoke(app, ["import"], prog_name="gce")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: gce import [OPTIONS] PATH [NAME]\n")
    result = CliRunner().invoke(app, ["idmap", "test", "x"], prog_name="gce")
    assert result.stderr.startswith("Usage: gce idmap test [OPTIONS] NAME IDENTITY\n"), result.stderr
