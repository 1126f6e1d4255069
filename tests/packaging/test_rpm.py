"""gce's .rpm (packaging/rpm/): rpmlint clean, its dependencies, files and scriptlets as rpm
reads them, the glibc check that keeps it loadable on RHEL 8, and the package installed for real
with `rpm -i --nodeps` in a booted Debian 12 (tests/systemd's container; Debian has no python3.11
*rpm* to satisfy the dependency): %post runs, `gce enable-on-boot` starts the shipped unit, a
task runs, a reinstall stops and restarts the endpoint around the new files, and `rpm -e` stops,
disables and removes it.

The container tests run in order on one container: each leaves the state the next one starts
from. It shares the host's network, so tasks and results go through the session's broker.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gce import __version__
from tests.packaging.machine import booted_debian
from tests.systemd.container import Machine

# The first test waits for the package: a build takes minutes on a busy machine, after any other
# package build under way (tests/packaging/build.py builds one at a time).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROJECT = Path(__file__).resolve().parents[2]
RPM_DIR = PROJECT / "packaging" / "rpm"
NAME = "rpmep"
UNIT = f"gce-endpoint@{NAME}.service"
TEMPLATE = "/usr/lib/systemd/system/gce-endpoint@.service"
# Debian's systemd names the units of /usr/lib/systemd by its /lib path (/lib is /usr/lib there).
LOADED_FROM = (TEMPLATE, TEMPLATE.removeprefix("/usr"))


@pytest.fixture(scope="module")
def rpm() -> Path:
    for tool in ("rpmbuild", "rpmlint", "objdump", "rpm2cpio", "cpio"):
        if shutil.which(tool) is None:
            pytest.fail(f"the .rpm tests need {tool}: apt-get install -y rpm rpmlint binutils cpio "
                        "(make test does it)", pytrace=False)
    from tests.packaging.build import package

    started = time.monotonic()
    built = package("rpm")
    print(f"{built.name}: {built.stat().st_size / 2**20:.1f} MiB, {time.monotonic() - started:.1f} s to build "
          "(or to find in the cache)")
    return built


def query(rpm: Path, *options: str) -> str:
    return subprocess.run(["rpm", "-qp", *options, str(rpm)], capture_output=True, text=True, check=True).stdout


@functools.cache
def payload(rpm: Path) -> bytes:
    """The package's files as one cpio archive (its xz stream decompressed once)."""
    return subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout


def member(rpm: Path, path: str) -> str:
    """The text of PATH in the package's payload."""
    cpio = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", f".{path}"], input=payload(rpm),
                          capture_output=True, check=True)
    return cpio.stdout.decode()


def test_rpmlint_finds_nothing_left_unexplained(rpm):
    lint = subprocess.run(["rpmlint", "-r", str(RPM_DIR / "gce.rpmlintrc"), str(rpm)],
                          capture_output=True, text=True)
    findings = re.findall(r"^\S+: [EW]: .*$", lint.stdout, re.M)
    assert findings == [], lint.stdout
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 errors, 0 warnings" in lint.stdout


def test_requires_python3_11_and_nothing_from_the_venv_and_conflicts_with_globus(rpm):
    requires = set(query(rpm, "--requires").split("\n")) - {""}
    assert {r for r in requires if not r.startswith("rpmlib(")} == {
        "python3.11", "systemd", "systemd-libs", "libstdc++", "logrotate", "/bin/sh", f"config(gce) = {__version__}-1"}
    assert query(rpm, "--conflicts").split() == ["globus-compute-agent"]
    # The venv's libraries are its own: the package offers none of them to the system.
    provides = set(query(rpm, "--provides").split("\n")) - {""}
    assert provides == {f"gce = {__version__}-1", f"gce(x86-64) = {__version__}-1", f"config(gce) = {__version__}-1"}
    assert query(rpm, "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH} %{LICENSE}").startswith(
        f"gce-{__version__}-1.x86_64 Apache-2.0")


def test_the_files_are_where_an_rpm_system_looks_for_them(rpm):
    listing = query(rpm, "--qf", "[%{FILEMODES:perms}|%{FILEFLAGS:fflags}|%{FILEUSERNAME}:%{FILEGROUPNAME}|"
                    "%{FILENAMES}\n]")
    files = {line.split("|")[-1]: line.split("|")[:3] for line in listing.splitlines()}
    assert files["/etc/gce"] == ["drwxr-x---", "", "root:root"]
    assert files["/var/log/gce"] == ["drwxr-x---", "", "root:root"]
    assert files["/var/lib/gce"] == ["drwxr-xr-x", "", "root:root"]
    assert files["/run/gce"] == ["drwxr-xr-x", "g", "root:root"]  # %ghost: made by tmpfiles, not unpacked
    assert files["/etc/sysconfig/gce"][1] == "cn"  # %config(noreplace)
    assert files["/etc/logrotate.d/gce"][1] == "cn"
    assert files["/usr/bin/gce"][0].startswith("l")
    for path in (TEMPLATE, "/usr/lib/systemd/user/gce-endpoint@.service", "/usr/lib/tmpfiles.d/gce.conf",
                 "/opt/gce/bin/gce", "/opt/gce/bin/python3.11", "/opt/gce/packaged.json",
                 "/usr/share/man/man1/gce.1.gz", "/usr/share/man/man1/gce-start.1.gz",
                 "/usr/share/man/man5/gce-config.5.gz", "/usr/share/bash-completion/completions/gce",
                 "/usr/share/zsh/site-functions/_gce", "/usr/share/fish/vendor_completions.d/gce.fish",
                 "/usr/share/doc/gce/bundled-licenses.txt"):
        assert path in files, path
    assert not [p for p in files if p.startswith("/etc/systemd/")]  # the admin's: enable-on-boot links there

    by_package = query(rpm, "--filesbypkg").split("\n")
    assert f"gce                       {TEMPLATE}" in by_package

    for unit in (TEMPLATE, "/usr/lib/systemd/user/gce-endpoint@.service"):
        text = member(rpm, unit).splitlines()
        assert "ExecStart=/usr/bin/gce start %i" in text
        assert "EnvironmentFile=-/etc/sysconfig/gce" in text
        assert any(line.startswith("ExecReload=") for line in text)
    assert json.loads(member(rpm, "/opt/gce/packaged.json")) == {
        "kind": "rpm", "version": __version__, "environment_file": "/etc/sysconfig/gce",
        "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}
    tmpfiles = [line.split() for line in member(rpm, "/usr/lib/tmpfiles.d/gce.conf").splitlines()
                if line and not line.startswith("#")]
    assert [entry[:4] for entry in tmpfiles] == [["d", "/run/gce", "0755", "root"]]


def scriptlets(rpm: Path) -> dict[str, str]:
    """{"preinstall": its text, ...} as `rpm -qp --scripts` prints them."""
    parts = re.split(r"^(\w+) scriptlet \(using /bin/sh\):\n", query(rpm, "--scripts"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_scriptlets_stop_and_start_the_instances_rpms_macros_do_not_know(rpm):
    scripts = scriptlets(rpm)
    assert set(scripts) == {"preinstall", "postinstall", "preuninstall", "postuninstall", "posttrans"}
    # Upgrade: the new package's %pre records and stops the active instances, %posttrans starts them.
    pre = scripts["preinstall"]
    assert "if [ $1 -gt 1 ]" in pre and "'gce-endpoint@*.service'" in pre
    assert "systemctl stop $(cat /run/gce/upgrade-restart)" in pre
    assert "systemctl start $(cat /run/gce/upgrade-restart)" in scripts["posttrans"]
    # %systemd_post and the tmpfiles, the daemon-reload that makes the template known.
    post = scripts["postinstall"]
    assert "systemd-tmpfiles --create /usr/lib/tmpfiles.d/gce.conf" in post
    assert "systemctl daemon-reload" in post and "preset gce-endpoint@.service" in post
    # Erase: every instance stopped and disabled, the template's too (%systemd_preun).
    preun = scripts["preuninstall"]
    assert "disable --now gce-endpoint@.service" in preun and "systemctl disable --now $instances" in preun
    postun = scripts["postuninstall"]
    assert "try-restart gce-endpoint@.service" in postun and "rm -rf /run/gce" in postun
    for text in scripts.values():
        assert "%{" not in text and "%systemd" not in text and "%tmpfiles" not in text  # every macro expanded
        assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0


# -- the glibc check, on files planted for it ------------------------------------------------------
def compile_into(stage: Path, name: str, source: str, compiler: str = "gcc") -> Path:
    out = stage / "opt/gce/lib/python3.11/site-packages" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".cpp" if compiler == "g++" else ".c")
    src.write_text(source)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    src.unlink()
    return out


def check_glibc(stage: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/bin/python3", str(RPM_DIR / "check_glibc.py"), str(stage)],
                          capture_output=True, text=True)


def test_the_glibc_check_fails_on_a_library_needing_a_glibc_newer_than_rhel_8s(tmp_path):
    if shutil.which("gcc") is None or shutil.which("g++") is None:
        pytest.fail("the glibc check's test compiles libraries: apt-get install -y gcc g++", pytrace=False)
    stage = tmp_path / "stage"
    compile_into(stage, "old.so", "#include <stdlib.h>\nchar *f(void) { return getenv(\"HOME\"); }\n")
    compile_into(stage, "cxx.so", "#include <string>\nstd::string f() { return std::string(\"x\") + \"y\"; }\n",
                 compiler="g++")
    (stage / "opt/gce/lib/python3.11/site-packages/not-elf.so").write_text("text")
    fine = check_glibc(stage)
    assert (fine.returncode, fine.stderr) == (0, ""), fine.stdout + fine.stderr
    assert re.search(r"^highest GLIBC needed: \S+@GLIBC_2\.[0-9.]+ by opt/gce/lib/python3.11/site-packages/",
                     fine.stdout, re.M), fine.stdout
    assert re.search(r"^highest GLIBCXX needed: \S+@GLIBCXX_3\.4[0-9.]* by opt/gce/lib/python3.11/site-packages/"
                     r"cxx.so$", fine.stdout, re.M), fine.stdout

    # close_range: glibc 2.34 (RHEL 9), after RHEL 8's 2.28.
    compile_into(stage, "pkg/_new.so", "#define _GNU_SOURCE\n#include <unistd.h>\n"
                                       "int f(void) { return close_range(3, ~0U, 0); }\n")
    bad = check_glibc(stage)
    assert bad.returncode == 1
    assert bad.stderr == (
        "error: opt/gce/lib/python3.11/site-packages/pkg/_new.so needs close_range@GLIBC_2.34: newer than glibc "
        "2.28 (RHEL 8), it would not load there\n"
        "hint: pin a wheel built for an older manylinux in packaging/requirements.lock, or build that "
        "extension on an older system\n")
    assert "highest GLIBC needed: close_range@GLIBC_2.34 by opt/gce/lib/python3.11/site-packages/pkg/_new.so\n" \
        in bad.stdout


# -- installed for real ----------------------------------------------------------------------------
def where_am_i():
    import os
    import sys

    import gce

    return sys.prefix, gce.__version__, os.getuid()


@pytest.fixture(scope="module")
def machine(rpm: Path, tmp_path_factory: pytest.TempPathFactory):
    """A booted copy of tests/systemd's Debian 12 rootfs (it holds rpm), the .rpm copied in."""
    def copy_in(m: Machine) -> None:
        shutil.copy(rpm, m.root / "srv" / "gce.rpm")  # the container's /tmp is a fresh tmpfs

    yield from booted_debian(tmp_path_factory.mktemp("rpm"), "gcerpm", ".rpm", copy_in)


@pytest.fixture(scope="module")
def site() -> dict:
    """What one test leaves for the next."""
    return {}


@pytest.fixture()
def by_value():
    """The task functions of this module travel by value: the packaged venv cannot import tests."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def run_task(site: dict):  # type: ignore[no-untyped-def]
    from gce.sdk import Executor

    with Executor(endpoint_id=site["endpoint_id"], broker_url=site["url"]) as ex:
        return ex.submit(where_am_i).result(timeout=90)


def test_rpm_i_runs_post_which_applies_the_tmpfiles_and_loads_the_unit(machine):
    assert machine.run("test -e /run/gce", check=False).returncode == 1
    started = time.monotonic()
    done = machine.run("rpm -i --nodeps /srv/gce.rpm", timeout=300)
    print(f"rpm -i: {time.monotonic() - started:.1f} s")
    assert "error" not in done.stdout + done.stderr.replace("use Alien instead", ""), done.stdout + done.stderr
    assert machine.run("stat -c '%a %U' /run/gce /etc/gce /var/log/gce").stdout.split("\n")[:3] == [
        "755 root", "750 root", "750 root"]
    unit = machine.show("gce-endpoint@probe.service", "LoadState", "FragmentPath")
    assert unit["LoadState"] == "loaded" and unit["FragmentPath"] in LOADED_FROM, unit
    assert machine.run("readlink /usr/bin/gce").stdout.strip() == "/opt/gce/bin/gce"
    assert machine.run("gce version").stdout.startswith(f"gce {__version__}")


@pytest.mark.broker
def test_enable_on_boot_starts_the_shipped_unit_which_runs_a_task(machine, broker, site, by_value):
    from gce.commands.broker import set_yaml_key

    machine.run(f"gce configure {NAME} --engine thread --max-workers 2 --no-input")
    endpoint_id = json.loads((machine.root / "var/lib/gce" / NAME / "endpoint.json").read_text())["endpoint_id"]
    endpoint_url, users = broker.provision(endpoint_id, users=["alice"])
    set_yaml_key(machine.root / "etc/gce" / NAME / "config.yaml", ("broker", "url"), endpoint_url)
    site.update(endpoint_id=endpoint_id, url=users["alice"])

    machine.run(f"gce enable-on-boot {NAME}")
    state = machine.wait_active(UNIT)
    site["pid"] = state["MainPID"]
    unit = machine.show(UNIT, "FragmentPath", "UnitFileState", "EnvironmentFiles")
    assert unit["FragmentPath"] in LOADED_FROM and unit["UnitFileState"] == "enabled", unit
    assert unit["EnvironmentFiles"].startswith("/etc/sysconfig/gce "), unit
    assert machine.run("find /etc/systemd/system -name '*gce*'").stdout.split() == [
        f"/etc/systemd/system/multi-user.target.wants/{UNIT}"]
    assert run_task(site) == ("/opt/gce", __version__, 0)


@pytest.mark.broker
def test_a_reinstall_stops_the_endpoint_before_the_new_files_and_starts_it_after(machine, site, by_value):
    """rpm -U --replacepkgs runs %pre as an upgrade does ($1 is 2): the upgrade's path, for real."""
    machine.run("rpm -U --replacepkgs --nodeps /srv/gce.rpm", timeout=300)
    state = machine.wait_active(UNIT)
    assert state["MainPID"] != site["pid"]
    assert machine.run("test -e /run/gce/upgrade-restart", check=False).returncode == 1
    stops = machine.run(f"journalctl -u {UNIT} -o cat --no-pager | grep -c '^Stopped '", check=False).stdout
    assert stops.strip() == "1"
    assert run_task(site) == ("/opt/gce", __version__, 0)


def test_rpm_e_stops_and_disables_the_endpoint_and_leaves_its_configuration(machine):
    machine.run("rpm -e gce", timeout=120)
    state = machine.show(UNIT, "ActiveState", "UnitFileState", "LoadState")
    assert (state["ActiveState"], state["LoadState"]) == ("inactive", "not-found"), state  # a clean stop
    assert machine.run("find /etc/systemd/system -name '*gce*'").stdout.split() == []
    assert machine.run("pgrep -af /op[t]/gce", check=False).stdout == ""  # [t]: not this shell's own line
    for gone in ("/opt/gce", "/usr/bin/gce", "/run/gce", TEMPLATE, "/etc/sysconfig/gce"):
        assert machine.run(f"test -e {gone} || test -L {gone}", check=False).returncode == 1, gone
    # rpm has no purge: the endpoint's configuration and state stay for a reinstall.
    assert machine.run(f"test -f /etc/gce/{NAME}/config.yaml && test -d /var/lib/gce/{NAME}").returncode == 0
