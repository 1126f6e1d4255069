"""gce enable-on-boot / disable-on-boot of gce installed from a package: the shipped template
is enabled, never written nor removed. tests/systemd/test_packaged.py does it under a real
systemd with the layout a package makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gce.commands import enable_on_boot as eob
from gce.commands import packaged as pk
from gce.errors import UsageError
from tests.commands.conftest import GCE_BIN
from tests.commands.test_enable_on_boot import FakeSystemd, enable_link


def package_in(root: Path, kind: str = "deb") -> pk.Packaged:
    """A package's layout under ROOT: its packaged.json fields and the units it ships."""
    env = "/etc/default/gce" if kind == "deb" else "/etc/sysconfig/gce"
    package = pk.Packaged(kind, "1.0", env, str(root / "usr/lib/systemd/system"), str(root / "usr/lib/systemd/user"))
    for relative, text in pk.render_packaged_units(env).items():
        path = root / "usr/lib/systemd" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def test_the_shipped_template_is_used_only_when_installed_from_a_package_that_has_it(tmp_path):
    system, user = eob.Target(False, tmp_path / "etc"), eob.Target(True, tmp_path / "home")
    assert eob.shipped_template(None, system) is None  # a source checkout
    package = package_in(tmp_path)
    assert eob.shipped_template(package, system) == tmp_path / "usr/lib/systemd/system" / eob.TEMPLATE
    assert eob.shipped_template(package, user) == tmp_path / "usr/lib/systemd/user" / eob.TEMPLATE
    (tmp_path / "usr/lib/systemd/user" / eob.TEMPLATE).unlink()  # gone: gce writes its own, as from source
    assert eob.shipped_template(package, user) is None


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_enable_from_a_package_starts_the_shipped_unit_and_writes_nothing(tmp_path, user, capsys):
    target, systemd = eob.Target(user, tmp_path / "etc/systemd"), FakeSystemd()
    shipped = eob.shipped_template(package_in(tmp_path), target)
    assert shipped is not None
    before = shipped.read_text()
    assert eob.install_shipped("a", target, shipped, systemd, None)["ActiveState"] == "active"
    assert systemd.calls == [("reload",), ("enable_start", "gce-endpoint@a.service")]
    assert not target.unit_dir.exists() and shipped.read_text() == before
    assert capsys.readouterr().err == ""
    assert eob.install_shipped("a", target, shipped, None, None) is None  # no systemd: nothing to do


def test_gce_home_is_refused_for_a_packaged_unit_saying_where_it_goes_instead(tmp_path):
    shipped = package_in(tmp_path, "rpm").system_unit_dir + "/" + eob.TEMPLATE
    with pytest.raises(UsageError) as info:
        eob.install_shipped("a", eob.Target(False, tmp_path / "etc"), Path(shipped), FakeSystemd(), "/srv/gce")
    assert str(info.value) == (f"cannot enable endpoint 'a' with GCE_HOME=/srv/gce: "
                               f"the packaged unit {shipped} runs endpoints without GCE_HOME")
    assert info.value.hint == ("give the unit its GCE_HOME in a drop-in: systemctl edit gce-endpoint@a.service, "
                               "with the lines [Service] and Environment=GCE_HOME=/srv/gce, or for every endpoint "
                               "in /etc/sysconfig/gce; then run gce enable-on-boot a without GCE_HOME")
    user = eob.Target(True, tmp_path / "home")
    with pytest.raises(UsageError) as info:
        eob.install_shipped("a", user, eob.shipped_template(package_in(tmp_path), user), FakeSystemd(), "/srv/gce")
    assert "systemctl --user edit gce-endpoint@a.service" in info.value.hint and "sysconfig" not in info.value.hint


def test_a_unit_left_by_a_source_install_is_named_as_shadowing_the_packaged_one_and_kept(tmp_path, capsys):
    target, systemd = eob.Target(False, tmp_path / "etc"), FakeSystemd()
    eob.install("old", target, None, str(GCE_BIN), None)  # what enable-on-boot wrote from a checkout
    admins = target.template.read_text()
    shipped = eob.shipped_template(package_in(tmp_path), target)
    eob.install_shipped("a", target, shipped, systemd, None)
    err = " ".join(capsys.readouterr().err.split())
    assert f"warning: {target.template} (from an install of gce from source) shadows the packaged {shipped}" in err
    assert f"remove {target.template}, then systemctl daemon-reload" in err
    assert target.template.read_text() == admins and systemd.calls[-1] == ("enable_start", "gce-endpoint@a.service")


def test_disable_from_a_package_stops_and_unlinks_but_keeps_every_unit_file(tmp_path):
    target, systemd = eob.Target(False, tmp_path / "etc"), FakeSystemd()
    shipped = eob.shipped_template(package_in(tmp_path), target)
    eob.install("old", target, None, str(GCE_BIN), None)  # an admin's file: not gce's to remove
    link = enable_link(target, "a")
    assert eob.uninstall("a", target, systemd, shipped) == [link]
    assert systemd.calls == [("stop_disable", "gce-endpoint@a.service"), ("reload",)]
    assert shipped.exists() and target.template.exists()
    target.template.unlink()
    systemd.calls.clear()
    assert eob.uninstall("a", target, systemd, shipped) == []  # the shipped unit alone: still stopped
    assert systemd.calls == [("stop_disable", "gce-endpoint@a.service")] and shipped.exists()
