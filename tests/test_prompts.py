"""What gce asks on a real terminal (a pty driven by pexpect), and what each answer does.

Only `gce delete` asks anything: `gce configure` takes everything from its options.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

GCE = str(Path(sys.executable).parent / "gce")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("GCE_") and k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    return {**keep, "GCE_HOME": str(tmp_path / "gce-home"), "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture
def demo(env: dict[str, str]) -> Path:
    """An endpoint named demo; returns its directory."""
    subprocess.run([GCE, "configure", "demo", "--broker-url", "amqp://ep@127.0.0.1:1/gce", "--engine", "thread"],
                   env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    home = Path(env["GCE_HOME"]) / "demo"
    assert (home / "config.yaml").is_file()
    return home


def delete_on_a_terminal(env: dict[str, str], answer: str) -> tuple[str, int]:
    """Run `gce delete demo` on a pty, wait for its question, answer ANSWER; (all it printed, exit status)."""
    child = pexpect.spawn(GCE, ["delete", "demo"], env=env, encoding="utf-8", timeout=30, dimensions=(24, 250))
    try:
        child.expect(r"Delete endpoint demo \([0-9a-f-]{36}\) and everything in .*\? \[y/N\]: ")
        asked = child.before + child.after
        child.sendline(answer)
        child.expect(pexpect.EOF)
        said = child.before
    finally:
        child.close()
    return asked + said, child.exitstatus


def test_answering_no_keeps_the_endpoint(env, demo):
    text, status = delete_on_a_terminal(env, "n")
    assert status == 1
    assert f"and everything in {demo}?" in text
    assert re.search(r"\r\nendpoint demo was not deleted\r\n$", text)
    assert (demo / "config.yaml").is_file() and (demo / "endpoint.json").is_file()


def test_just_enter_means_no(env, demo):
    text, status = delete_on_a_terminal(env, "")
    assert status == 1
    assert "endpoint demo was not deleted" in text
    assert (demo / "config.yaml").is_file()


def test_answering_yes_removes_the_endpoint(env, demo):
    text, status = delete_on_a_terminal(env, "y")
    assert status == 0
    assert f"removed {demo}\r\n" in text
    assert text.endswith("endpoint demo deleted\r\n")
    assert not demo.exists()
    listed = subprocess.run([GCE, "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert listed.stdout == "[]\n"
