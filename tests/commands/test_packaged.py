"""What a package says about the gce it installed (packaged.json), and the units it ships,
rendered by the same code that writes a source checkout's units."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gce.commands import packaged as pk
from gce.errors import UsageError
from tests.commands.conftest import GCE_BIN
from tests.commands.test_enable_on_boot import settings, verify

BEFORE_RELOAD = Path(__file__).with_name("units_before_reload")
FIELDS = {"kind": "deb", "version": "1.2.3", "environment_file": "/etc/default/gce",
          "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}


def test_a_source_checkout_has_no_packaged_json():
    assert pk.packaged_json() == Path(sys.prefix) / "packaged.json"
    assert pk.packaged() is None


def test_packaged_json_is_read_into_its_fields(tmp_path):
    (tmp_path / "packaged.json").write_text(json.dumps(FIELDS))
    assert pk.packaged(tmp_path / "packaged.json") == pk.Packaged(**FIELDS)


@pytest.mark.parametrize("text", ["{not json", "[]", json.dumps({**FIELDS, "kind": 3}),
                                  json.dumps({k: v for k, v in FIELDS.items() if k != "user_unit_dir"})],
                         ids=["not-json", "not-an-object", "not-a-string", "missing-field"])
def test_a_corrupt_packaged_json_is_an_error_naming_the_file(tmp_path, text):
    path = tmp_path / "packaged.json"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        pk.packaged(path)
    assert info.value.what == f"cannot read {path}" and info.value.hint == "reinstall the gce package"


@pytest.mark.parametrize("environment_file", ["/etc/default/gce", "/etc/sysconfig/gce"])
def test_the_shipped_units_run_usr_bin_gce_with_the_environment_file_and_reload(environment_file):
    units = pk.render_packaged_units(environment_file)
    assert sorted(units) == ["system/gce-endpoint@.service", "user/gce-endpoint@.service"]
    for text in units.values():
        unit = settings(text)
        assert unit["ExecStart"] == ["/usr/bin/gce start %i"]
        assert unit["EnvironmentFile"] == [f"-{environment_file}"] and "Environment" not in unit
        assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        assert f"set it in {environment_file}" in text or "Shipped by the gce package" in text
        assert "Written by `gce enable-on-boot" not in text  # enable-on-boot does not write these
    assert settings(units["system/gce-endpoint@.service"])["WantedBy"] == ["multi-user.target"]
    assert settings(units["user/gce-endpoint@.service"])["WantedBy"] == ["default.target"]


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_the_shipped_units_pass_systemd_analyze_verify_without_a_warning(tmp_path, user):
    text = pk.render_packaged_units("/etc/sysconfig/gce")[f"{'user' if user else 'system'}/{pk.TEMPLATE}"]
    # /usr/bin/gce is the package's link: here the checkout's gce stands in for it
    (tmp_path / pk.TEMPLATE).write_text(text.replace("ExecStart=/usr/bin/gce ", f"ExecStart={GCE_BIN} "))
    assert verify(tmp_path, user) == ""


def without_reload(text: str) -> str:
    """TEXT less the ExecReload= line and the comment right above it."""
    lines = text.splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if line.startswith("ExecReload="))
    start = end
    while lines[start - 1].startswith("#"):
        start -= 1
    return "".join(lines[:start] + lines[end + 1:])


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_a_source_checkout_unit_is_what_it_was_but_for_exec_reload(user):
    """units_before_reload/ holds the units enable-on-boot wrote before ExecReload existed."""
    text = pk.render_unit(user, "/srv/venv/bin/gce", "/srv/gce home")
    assert settings(text)["ExecReload"] == ["/bin/kill -HUP $MAINPID"] and "EnvironmentFile" not in text
    assert without_reload(text) == (BEFORE_RELOAD / f"{'user' if user else 'system'}.service").read_text()


def test_the_units_command_writes_both_units(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gce.commands.packaged", "units", str(tmp_path / "out"),
                           "--environment-file", "/etc/default/gce"], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    for relative, text in pk.render_packaged_units("/etc/default/gce").items():
        path = tmp_path / "out" / relative
        assert path.read_text() == text and path.stat().st_mode & 0o777 == 0o644


def test_the_units_command_refuses_an_environment_file_that_is_no_plain_absolute_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gce.commands.packaged", "units", str(tmp_path),
                           "--environment-file", "etc/default/gce x"], capture_output=True, text=True)
    assert proc.returncode == 64 and proc.stderr.startswith(
        "error: cannot use 'etc/default/gce x' as the units' environment file: it must be an absolute path")
    assert list(tmp_path.iterdir()) == []
