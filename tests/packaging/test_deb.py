"""The .deb as built, before anyone installs it: lintian, reproducibility, what it holds, what it
depends on, and a build that refuses an incomplete lock. (Installing it in a booted Debian is
tests/packaging/test_deb_install.py.)"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from gce import __version__
from tests.packaging.build import ROOT, build, inputs_key, package
from tests.systemd.container import PACKAGES

# A build (or the wait for another one holding the cache's lock) takes minutes on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SITE = "opt/gce/lib/python3.11/site-packages"


def run(*argv: str | Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def data(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb's files, unpacked (dpkg-deb -x)."""
    into = tmp_path_factory.mktemp("deb-data")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True)
    return into


@pytest.fixture(scope="module")
def control(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb's control files (dpkg-deb -e)."""
    into = tmp_path_factory.mktemp("deb-control") / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(into)], check=True)
    return into


def field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "-f", deb, name, check=True).stdout.strip()


def test_lintian_reports_no_error_and_no_warning_left_unexplained(deb: Path):
    lint = run("lintian", "--display-level", ">=warning", "--fail-on", "error,warning", deb, timeout=600)
    tags = [line for line in lint.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert (lint.returncode, tags) == (0, []), lint.stdout[-3000:] + lint.stderr[-3000:]


def test_two_builds_of_one_tree_are_byte_identical(tmp_path: Path):
    for attempt in range(2):
        # A work tree shared with people editing it may change during a build: compare only two
        # builds of the same inputs (in a fresh clone, the first attempt always is).
        before = inputs_key("deb", __version__)
        cached = package("deb")
        again = build("deb", __version__, tmp_path / str(attempt))  # afresh, with the cached one's date
        if cached.parent.name == before == inputs_key("deb", __version__):
            break
    else:
        pytest.skip("the work tree changed during each build: there were no two builds of one tree to compare")
    assert again.name == cached.name
    if again.read_bytes() != cached.read_bytes():
        diff = run("bash", "-c", f"diff <(dpkg-deb -c {cached}) <(dpkg-deb -c {again}) | head -20").stdout
        pytest.fail(f"{cached} and {again} differ:\n{diff}")


def test_control_depends_on_the_interpreter_the_venv_was_built_on_and_conflicts_with_globus(deb: Path):
    assert (field(deb, "Package"), field(deb, "Version"), field(deb, "Architecture")) == ("gce", __version__, "amd64")
    assert (field(deb, "Section"), field(deb, "Priority")) == ("admin", "optional")
    depends = [re.match(r"[a-z0-9.+-]+", d.strip()).group(0) for d in field(deb, "Depends").split(",")]
    assert depends[:2] == ["python3.11", "libsystemd0"], depends
    assert "python3.11 " not in field(deb, "Depends") + " "  # no version range: this exact package
    # What an offline apt install can satisfy: the test rootfs (a minimal Debian 12 with gce's
    # dependencies) holds each; libc6, libgcc-s1 and libstdc++6 (shlibs) are in every Debian.
    assert set(depends) <= set(PACKAGES.split(",")) | {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}, depends
    assert field(deb, "Conflicts") == "globus-compute-agent"
    assert field(deb, "Replaces") == "" and field(deb, "Provides") == ""
    assert "rabbitmq-server" not in field(deb, "Depends") + field(deb, "Recommends")


def test_the_venv_is_at_opt_gce_on_python311_without_pip_and_says_it_came_from_the_deb(data: Path):
    venv = data / "opt/gce"
    assert (venv / "bin/python3.11").readlink() == Path("/usr/bin/python3.11")
    assert (data / "usr/bin/gce").readlink() == Path("/opt/gce/bin/gce")
    assert (venv / "bin/gce").read_text().startswith("#!/opt/gce/bin/python\n")
    assert "home = /usr/bin\n" in (venv / "pyvenv.cfg").read_text()
    assert json.loads((venv / "packaged.json").read_text()) == {
        "kind": "deb", "version": __version__, "environment_file": "/etc/default/gce",
        "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}
    site = data / SITE
    installers = sorted(p.name for p in site.iterdir() if re.match(r"(pip|setuptools|wheel)\b", p.name))
    assert installers == []
    assert not list(venv.glob("bin/pip*")) and not list(venv.glob("bin/activate*"))
    # gce at this version, pystemd compiled against libsystemd
    assert (site / f"gce-{__version__}.dist-info").is_dir()
    ldd = run("ldd", next((site / "pystemd").glob("dbuslib.*.so"))).stdout
    assert "libsystemd.so.0" in ldd, ldd
    # bytecode that stays valid whatever the files' times (flags 0b11: checked hash)
    pyc = next((site / "gce/__pycache__").glob("cli.cpython-311.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b11


def test_no_file_names_the_directory_it_was_built_in(data: Path):
    # build-venv.sh stages into /tmp/gce-deb.XXXXXX/stage and builds in /tmp/gce-build-venv.XXXXXX
    found = run("grep", "-rlaE", r"/tmp/gce-(deb|build-venv)\.|/stage/opt/gce", data).stdout
    assert found == ""


def test_units_tmpfiles_and_directories_are_where_a_debian_system_reads_them(data: Path, deb: Path):
    for unit in ("usr/lib/systemd/system/gce-endpoint@.service", "usr/lib/systemd/user/gce-endpoint@.service"):
        text = (data / unit).read_text()
        assert "\nExecStart=/usr/bin/gce start %i\n" in text, unit
        assert "\nEnvironmentFile=-/etc/default/gce\n" in text, unit
        assert "\nExecReload=" in text, unit
    assert (data / "usr/lib/tmpfiles.d/gce.conf").read_text().splitlines()[-1].split() == \
        ["d", "/run/gce", "0755", "root", "root", "-"]
    tarball = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        modes = {m.name.rstrip("/"): (m.mode, m.uid, m.gid) for m in tar.getmembers()}
    assert modes["./etc/gce"] == (0o750, 0, 0)
    assert modes["./var/log/gce"] == (0o750, 0, 0)
    assert modes["./var/lib/gce"] == (0o755, 0, 0)
    assert "/var/log/gce/*.log {" in (data / "etc/logrotate.d/gce").read_text()
    assert (data / "usr/share/man/man1/gce.1.gz").is_file() and (data / "usr/share/man/man5/gce-config.5.gz").is_file()
    assert (data / "usr/share/bash-completion/completions/gce").is_file()
    assert (data / "usr/share/zsh/vendor-completions/_gce").is_file()
    assert (data / "usr/share/fish/vendor_completions.d/gce.fish").is_file()


def test_the_admins_files_are_conffiles_and_the_scripts_stop_and_restart_endpoints(control: Path, data: Path):
    assert (control / "conffiles").read_text().split() == ["/etc/default/gce", "/etc/logrotate.d/gce"]
    environment = (data / "etc/default/gce").read_text()
    assert all(line.startswith("#") or not line.strip() for line in environment.splitlines())
    prerm, postinst, postrm = ((control / s).read_text() for s in ("prerm", "postinst", "postrm"))
    assert "/run/gce/upgrade-restart" in prerm and "/run/gce/upgrade-restart" in postinst
    assert "systemd-tmpfiles" in postinst and "--create gce.conf" in postinst
    assert "rm -rf /etc/gce /var/lib/gce /var/log/gce /run/gce" in postrm
    for script in ("prerm", "postinst", "postrm"):
        assert run("sh", "-n", control / script).returncode == 0, script


def test_bundled_licenses_and_copyright_name_every_distribution_in_the_venv(data: Path):
    site = data / SITE
    dists = sorted(re.sub(r"-[^-]+\.dist-info$", "", p.name).lower().replace("_", "-")
                   for p in site.glob("*.dist-info"))
    listed = (data / "usr/share/doc/gce/bundled-licenses.txt").read_text()
    copyright = (data / "usr/share/doc/gce/copyright").read_text()
    named = sorted(m.group(1).lower().replace("_", "-") for m in re.finditer(r"^(\S+) \S+: .+$", listed, re.M))
    assert named == dists
    assert "pystemd" in dists and "gce" in dists
    for line in re.findall(r"^\S+ \S+: .+$", listed, re.M):
        assert f" {line}\n" in copyright, line


def test_a_lock_without_a_pin_for_a_dependency_fails_the_build_and_says_which(tmp_path: Path):
    # typer alone: its own dependencies (rich, shellingham...) and gce's others have no pin
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(line + "\n" for line in (ROOT / "packaging/requirements.lock").read_text().splitlines()
                            if line.startswith("typer==")))
    proc = run("bash", ROOT / "packaging/build-venv.sh", tmp_path / "stage", "deb", __version__,
               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "GCE_LOCK": str(lock)}, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"error: {lock} lacks a dependency: " in proc.stderr, proc.stderr
    assert re.search(r"typer 0\.27\.3 requires (rich|shellingham|annotated-doc), which is not installed", proc.stderr)
    assert "hint: make lock" in proc.stderr
