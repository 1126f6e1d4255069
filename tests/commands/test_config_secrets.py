"""A password planted in an invalid config.yaml shows in no command's output and in no bundle.

Every config of tests/config/test_model.py (a wrong type of broker.url holding the password,
a malformed URL with one, an unknown key beside it, a YAML syntax error on its line, the
password under other keys) is given to an endpoint of its own; then `gce start`, `gce list`,
`gce status` and `gce diagnostic --bundle` run over all of them.
"""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from gce.config.paths import endpoint_paths
from tests.config.test_model import PIECES, PLANTED, PLANTED_YAML

CONFIGS = [text for text, _ in PLANTED + PLANTED_YAML]


@pytest.fixture
def planted(home):
    """One endpoint per planted config: their names."""
    names = []
    for i, text in enumerate(CONFIGS):
        paths = endpoint_paths(f"planted{i}")
        paths.config_dir.mkdir(parents=True, mode=0o700)
        paths.config_file.write_text(text)
        paths.config_file.chmod(0o600)
        paths.endpoint_json.write_text(json.dumps({"endpoint_id": f"00000000-0000-4000-8000-{i:012d}"}))
        names.append(paths.name)
    return names


def assert_no_secret(where: str, text: str) -> None:
    for piece in PIECES:
        assert piece not in text, f"{piece!r} is in {where}:\n{text}"


def test_start_status_and_list_never_show_a_planted_password(gce, planted):
    for name in planted:
        result = gce("start", name)
        assert result.exit_code == 78, (name, result.stdout, result.stderr)
        assert result.stderr.startswith(("error: invalid configuration in ", "error: cannot parse ")), result.stderr
        assert_no_secret(f"gce start {name}", result.stdout + result.stderr)
        for args in (["status", name], ["status", name, "--json"]):
            result = gce(*args)
            assert_no_secret(" ".join(args), result.stdout + result.stderr)
    for args in (["list"], ["list", "--json"]):
        result = gce(*args)
        assert result.exit_code == 0, result.stderr
        assert_no_secret(" ".join(args), result.stdout + result.stderr)
    rows = json.loads(gce("list", "--json").stdout)
    assert len(rows) == len(planted) and all(row["config_error"] for row in rows)


def test_a_detached_start_never_shows_a_planted_password(gce_bin, planted):
    """The real program, as an admin runs it: `gce start --detach` refuses before it forks."""
    for name in planted[:3]:
        proc = gce_bin("start", name, "--detach", "--timeout", "5")
        assert proc.returncode == 78, proc.stderr
        assert_no_secret(f"gce start {name} --detach", proc.stdout + proc.stderr)


def test_diagnostic_and_its_bundle_never_show_a_planted_password(gce, planted, tmp_path):
    out = tmp_path / "bundles"
    out.mkdir()
    result = gce("diagnostic", "--json", "--bundle-dir", str(out))
    assert_no_secret("gce diagnostic --json", result.stdout + result.stderr)
    rows = json.loads(result.stdout)
    failed = {r["endpoint"] for r in rows if r["check"] == "config" and r["status"] == "FAIL"}
    assert failed == set(planted)
    [archive] = os.listdir(out)
    with tarfile.open(out / archive) as tar:
        for member in tar.getmembers():
            if member.isfile():
                assert_no_secret(member.name, tar.extractfile(member).read().decode())
    result = gce("diagnostic")
    assert_no_secret("gce diagnostic", result.stdout + result.stderr)
