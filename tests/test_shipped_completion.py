"""The completion scripts the packages ship: current, and working where the packages put them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from typer.testing import CliRunner

from gce.cli import app
from gce.manpages.completion import FILES

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "packaging" / "completion"
VENV_BIN = Path(sys.executable).parent
BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def test_the_shipped_scripts_are_what_typer_generates_now(tmp_path: Path):
    subprocess.run([sys.executable, "-m", "gce.manpages", "--completion", str(tmp_path)], check=True, cwd=ROOT,
                   timeout=120)
    fresh = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    shipped = {p.name: p.read_bytes() for p in SHIPPED.iterdir()}
    assert sorted(fresh) == sorted(FILES.values())
    assert fresh == shipped, ("packaging/completion/ is stale: regenerate it with: "
                              ".venv/bin/python -m gce.manpages --completion packaging/completion/")


@pytest.fixture
def endpoints(gce_home: Path) -> list[str]:
    names = ["alpha-ep", "beta-ep"]
    for name in names:
        result = CliRunner().invoke(app, ["configure", name, "--max-workers", "2", "--no-input"])
        assert result.exit_code == 0, result.stderr
    return names


@pytest.mark.skipif(not BASH_COMPLETION.is_file(), reason="bash-completion is not installed (apt-get install "
                                                          "bash-completion)")
def test_bash_loads_the_installed_file_lazily_and_completes_commands_and_endpoints(tmp_path: Path,
                                                                                   endpoints: list[str]):
    """As installed by the packages: /usr/share/bash-completion/completions/gce, which bash-completion's
    _completion_loader sources on the first TAB after `gce` (here from BASH_COMPLETION_USER_DIR)."""
    user_dir = tmp_path / "bash-completion"
    (user_dir / "completions").mkdir(parents=True)
    shutil.copy(SHIPPED / FILES["bash"], user_dir / "completions" / "gce")
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GCE_DEBUG", "_GCE_", "BASH_COMPLETION"))}
    env = {**keep, "HOME": str(home), "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "TERM": "dumb",
           "INPUTRC": "/dev/null", "BASH_COMPLETION_USER_DIR": str(user_dir)}
    bash = pexpect.spawn("bash", ["--noprofile", "--norc", "-i"], env=env, encoding="utf-8", timeout=20,
                         dimensions=(40, 200))
    try:
        bash.sendline(f"source {BASH_COMPLETION}; PS1='gce''-test$ '")
        bash.expect_exact("gce-test$ ")
        bash.sendline("complete -p gce || echo not-yet''-loaded")
        bash.expect_exact("not-yet-loaded")  # nothing registered it before the first TAB
        bash.expect_exact("gce-test$ ")
        bash.send("gce st\t\t")
        bash.expect(r"start\s+status\s+stop")
        bash.send("\x15")  # clear the line
        bash.sendline("")
        bash.expect_exact("gce-test$ ")
        bash.send("gce start \t\t")
        bash.expect(r"alpha-ep\s+beta-ep")
        bash.send("\x15gce start be\t")
        bash.expect_exact("beta-ep")
        bash.send("\x15")
        bash.sendline("complete -p gce")
        bash.expect_exact("complete -o default -F _gce_completion gce")
        bash.sendline("exit")
        bash.expect(pexpect.EOF)
    finally:
        bash.close(force=True)


@pytest.mark.parametrize("shell, check", [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])])
def test_the_zsh_and_fish_scripts_parse(shell: str, check: list[str]):
    if shutil.which(check[0]) is None:
        pytest.skip(f"{shell} is not installed (apt-get install -y {shell}): its script's syntax is not checked")
    done = subprocess.run([*check, str(SHIPPED / FILES[shell])], capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stderr) == (0, "")


def test_zsh_completes_when_compinit_autoloads_the_file(tmp_path: Path, endpoints: list[str]):
    """Installed in a directory of $fpath, _gce is the body of the function _gce that compinit
    autoloads on the first TAB: it must answer then, not only register itself."""
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (apt-get install -y zsh)")
    functions = tmp_path / "functions"
    functions.mkdir()
    shutil.copy(SHIPPED / FILES["zsh"], functions / "_gce")
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "TERM": "dumb"}
    zsh = pexpect.spawn("zsh", ["-f", "-i"], env=env, encoding="utf-8", timeout=20, dimensions=(40, 200))
    try:
        zsh.sendline(f"fpath=({functions} $fpath); autoload -Uz compinit; compinit -u -D; PS1='gce''-test%% '")
        zsh.expect_exact("gce-test% ")
        zsh.send("gce start be\t")
        zsh.expect_exact("beta-ep")
        zsh.send("\x15")
        zsh.sendline("exit")
        zsh.expect(pexpect.EOF)
    finally:
        zsh.close(force=True)
