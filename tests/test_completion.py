"""Shell completion, installed the way a user does and driven through a real interactive bash."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest
from typer.testing import CliRunner

from gce.cli import app

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def shell_home(tmp_path: Path, gce_home: Path) -> Path:
    """A throw-away HOME (installing completion edits ~/.bashrc) with two configured endpoints."""
    for name in ("alpha-ep", "beta-ep"):
        result = CliRunner().invoke(app, ["configure", name, "--max-workers", "2"])
        assert result.exit_code == 0, result.stderr
    home = tmp_path / "user-home"
    home.mkdir()
    return home


def _env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_DEBUG", "_GCE_"))}
    return {**keep, "HOME": str(home), "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "TERM": "dumb",
            "INPUTRC": "/dev/null"}


def test_install_completion_writes_only_under_home_and_completes_names(shell_home: Path):
    env = _env(shell_home)
    real_bashrc = Path.home() / ".bashrc"
    before = real_bashrc.read_bytes() if real_bashrc.exists() else None
    installed = pexpect.run(f"{VENV_BIN / 'gce'} --install-completion bash", env=env, encoding="utf-8",
                            withexitstatus=True, timeout=30)
    assert installed[1] == 0, installed[0]
    assert "bash completion installed" in installed[0]
    assert "gce" in (shell_home / ".bashrc").read_text()
    assert (shell_home / ".bash_completions" / "gce.sh").is_file()
    assert (real_bashrc.read_bytes() if real_bashrc.exists() else None) == before

    bash = pexpect.spawn("bash", ["--noprofile", "-i"], env=env, encoding="utf-8", timeout=20,
                         dimensions=(40, 200))
    try:
        bash.sendline("PS1='gce''-test$ '")  # after /etc/bash.bashrc set its own; the echo does not match
        bash.expect_exact("gce-test$ ")
        bash.send("gce status \t\t")
        bash.expect(r"alpha-ep\s+beta-ep")
        bash.send("\x15")  # clear the line
        bash.send("gce sta\t")
        bash.expect_exact("gce status")  # the only command starting so is completed at once
        bash.send("\x15gce status be\t")
        bash.expect_exact("beta-ep")
        bash.sendline("")
        bash.sendline("exit")
        bash.expect(pexpect.EOF)
    finally:
        bash.close(force=True)


def test_completion_proposes_endpoint_names_that_match(shell_home: Path, monkeypatch: pytest.MonkeyPatch):
    """The completion protocol bash uses, without bash: what `gce stop a<TAB>` is offered."""
    monkeypatch.setenv("_GCE_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "gce stop a")
    monkeypatch.setenv("COMP_CWORD", "2")
    result = CliRunner().invoke(app, [], prog_name="gce")
    assert result.stdout.split() == ["alpha-ep"]
