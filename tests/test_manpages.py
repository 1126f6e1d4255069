"""The manual in man/: generated from the CLI, current, and rendered by man without a warning."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main

from gce.cli import app
from gce.config.schema import CONFIG
from gce.manpages import config as config_page
from gce.manpages import escape
from gce.manpages.pages import all_pages, environment

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "man"
REGENERATE = f"{Path(sys.executable).relative_to(ROOT) if ROOT in Path(sys.executable).parents else sys.executable} " \
             "-m gce.manpages man/"


def _render(path: Path, width: int = 80) -> subprocess.CompletedProcess:
    return subprocess.run(["man", "-l", "--warnings=w", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MANWIDTH": str(width), "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"})


def test_the_committed_pages_are_what_the_cli_generates_now(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "gce.manpages", str(tmp_path)], check=True, cwd=ROOT, timeout=120)
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in MAN.iterdir()} if MAN.is_dir() else {}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"man/ is stale ({', '.join(stale)}): regenerate it with: {REGENERATE}"


def test_generating_twice_gives_the_same_bytes(tmp_path: Path):
    assert all_pages() == all_pages()  # no date, no dict order, no machine-dependent value


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("gce*.[15]")))
def test_every_page_renders_without_a_warning(page: str):
    path = MAN / page
    groff = subprocess.run(["groff", "-man", "-ww", "-z", str(path)], capture_output=True, text=True, timeout=60)
    assert (groff.returncode, groff.stderr) == (0, ""), groff.stderr
    shown = _render(path)
    assert (shown.returncode, shown.stderr) == (0, ""), shown.stderr
    assert shown.stdout.splitlines()[0].startswith(path.stem.upper() + "(")
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f"\n{heading}\n" in shown.stdout, f"{page} has no {heading} section"
    if page.endswith(".1"):
        assert "\nOPTIONS\n" in shown.stdout and "\nEXIT STATUS\n" in shown.stdout


def _commands(group, path: tuple[str, ...]):
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))


def test_every_command_has_a_page_that_names_its_options_and_gce_1_names_it():
    main = _render(MAN / "gce.1", width=200).stdout
    for path, cmd in _commands(typer.main.get_command(app), ("gce",)):
        name = "-".join(path)
        page = MAN / f"{name}.1"
        assert page.is_file(), f"{' '.join(path)} has no page: regenerate man/ with: {REGENERATE}"
        if len(path) == 2:
            assert f"{name}(1)" in main, f"gce.1 does not name {name}(1)"
        text = _render(page, width=200).stdout
        for param in cmd.params:
            for opt in getattr(param, "opts", []) if param.param_type_name == "option" else []:
                assert re.search(rf"(^|[ ,]){re.escape(opt)}\b", text, re.M), f"{name}.1 does not show {opt}"


def test_exit_status_comes_from_the_errors_the_cli_maps():
    from gce import errors

    text = _render(MAN / "gce.1", width=200).stdout
    status = text.split("\nEXIT STATUS\n")[1].split("\nENVIRONMENT\n")[0]
    for code in (0, 2, errors.EX_SOFTWARE, errors.EX_CONFIG, errors.NotRunning.exit_code, errors.EX_NOPERM):
        assert re.search(rf"^\s+{code}\s+\S", status, re.M), f"exit status {code} is not in gce.1"
    assert re.search(r"^\s+78\s+config error$", status, re.M)


def test_every_environment_variable_gce_reads_is_in_gce_1():
    read = set()
    for source in (ROOT / "gce").rglob("*.py"):
        read |= set(re.findall(r"environ(?:\.get\(|\[)\"([A-Z_]+)\"", source.read_text()))
    read |= {"GCE_ENDPOINT_BROKER_URL", "GCE_BROKER_URL"}  # read through constants (writer, sdk.settings)
    documented = {name for name, _ in environment()}
    assert read - documented == set()
    text = _render(MAN / "gce.1", width=200).stdout
    for name in documented:
        assert re.search(rf"^\s+{name}(\s|$)", text, re.M), name


def test_every_config_key_of_the_schema_is_described_with_its_default():
    keys = [key for key, _ in config_page.schema_keys(CONFIG)]
    assert sorted(config_page.KEYS) == sorted(keys)
    text = _render(MAN / "gce-config.5", width=300).stdout
    for key in keys:
        assert re.search(rf"^\s+{re.escape(key)}(\s|$)", text, re.M), key
    assert re.search(r"broker\.prefetch\n.*default: 1000\)", text)  # gce.config.model's default
    assert re.search(r"engine\.block_failure_limit\n.*default: 3\)", text)  # gce.uep.breaker's
    assert re.search(r"engine\.scheduler_poll_period\n.*default: parsl's\)", text)
    assert "mapped_identity.local.home" in text and "shell_escape" in text


def test_an_option_added_to_a_command_appears_in_its_page():
    tiny = typer.Typer(name="gce")

    @tiny.command("frob")
    def frob(name: str = typer.Argument(..., metavar="NAME", help="What to frob."),
             level: int = typer.Option(3, "--frobnicate-level", min=1, max=9, help="How hard to frob.")) -> None:
        """Frob an endpoint.

        It frobs.

        \b
        Example:
          gce frob NAME --frobnicate-level 4
        """

    @tiny.command("other")
    def other() -> None:
        """Do nothing."""

    before = all_pages(tiny)["gce-frob.1"]
    assert "\\fB\\-\\-frobnicate\\-level\\fR \\fIINTEGER\\fR\nHow hard to frob. (from 1 to 9; default: 3)" \
        in before
    assert "\n.SH EXAMPLES\n.RS 4\n.nf\ngce frob NAME \\-\\-frobnicate\\-level 4\n.fi\n" in before
    assert "gce-frob" in all_pages(tiny)["gce.1"]

    @tiny.command("frob")
    def frob2(level: int = typer.Option(3, "--frobnicate-level"),
              dry: bool = typer.Option(False, "--dry-run", "-n", help="Say what would be frobbed.")) -> None:
        """Frob an endpoint."""

    after = all_pages(tiny)["gce-frob.1"]
    assert "\\fB\\-\\-dry\\-run\\fR, \\fB\\-n\\fR\nSay what would be frobbed." in after
    assert "dry" not in before


@pytest.mark.parametrize("text, roff", [
    ("--json", "\\-\\-json"),
    ("multi-user and ep-NAME", "multi-user and ep-NAME"),
    (".hidden request", "\\&.hidden request"),
    ("'quoted", "\\&'quoted"),
    ("a \\ backslash", "a \\e backslash"),
    ("x -1 y", "x \\-1 y"),
])
def test_escape(text: str, roff: str):
    assert escape(text) == roff
