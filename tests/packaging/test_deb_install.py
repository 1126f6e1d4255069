"""The .deb as a sysadmin meets it, in a booted Debian 12 (tests/systemd's container): installed
offline with apt, a multi-user endpoint configured and enabled on boot running a task as the
mapped user, the manual and bash completion, a reboot, an upgrade with 500 tasks in flight, then
apt remove and apt purge.

The tests run in order on one container: each leaves the state the next one starts from. The
container shares the host's network, so tasks and results go through the session's broker.
"""

from __future__ import annotations

import collections
import json
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import pytest

from gce import __version__
from tests.endpoint import wait_until
from tests.packaging.machine import booted_debian
from tests.systemd.container import Machine

# The timeout covers building the .deb (the fixtures deb and deb_b) on a busy machine.
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(900)]

A, B = __version__, f"{__version__}.post1"  # B: the upgrade, built from the same tree
NAME = "hpc"
UNIT = f"gce-endpoint@{NAME}.service"
USER = "gcetest-deb"  # the local account alice maps to (inside the container only)
SUBMITTER = "alice"
WORKERS = 20
# Any download fails: apt may use only the .deb given and what the rootfs already holds.
OFFLINE = ("-o Acquire::http::Proxy=http://127.0.0.1:9 -o Acquire::https::Proxy=http://127.0.0.1:9 "
           "-o Acquire::Retries=0")
APT = f"DEBIAN_FRONTEND=noninteractive apt-get -y {OFFLINE}"
PROJECT = Path(__file__).resolve().parents[2]


def whoami():
    import os
    import pwd

    return os.getuid(), pwd.getpwuid(os.getuid()).pw_name


def slow(i, seconds):
    import os
    import time

    import gce

    time.sleep(seconds)
    return i, os.getuid(), gce.__version__  # the version of the gce that ran it


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory):
    """A booted copy of tests/systemd's Debian 12 rootfs, which holds every dependency of the .deb."""
    yield from booted_debian(tmp_path_factory.mktemp("debian"), "gcedeb", ".deb")


@pytest.fixture(scope="module")
def site() -> dict:
    """What one test leaves for the next: names of files before the install, the endpoint."""
    return {}


def gce_names(machine: Machine) -> set[str]:
    """Every path of the container whose name contains gce (the root and /run file systems),
    but the project and its venv seen read-only from the host."""
    prune = " -o ".join(f"-path {shlex.quote(str(p))}" for p in {PROJECT, Path(sys.prefix).resolve()})
    found = machine.run(f"find / /run -xdev \\( -path /proc -o -path /sys -o {prune} \\) -prune "
                        f"-o -iname '*gce*' -print").stdout
    return set(found.split("\n")) - {""}


def copy_in(machine: Machine, deb: Path) -> str:
    """DEB inside the container, where apt's _apt user can read it (/tmp there is a fresh tmpfs)."""
    inside = Path("/srv") / deb.name
    shutil.copy(deb, machine.root / inside.relative_to("/"))
    (machine.root / inside.relative_to("/")).chmod(0o644)
    return str(inside)


def apt_install(machine: Machine, deb: str) -> str:
    done = machine.run(f"{APT} install {deb}", timeout=300)
    fetched = re.findall(r"^Get:\d+ (\S+)", done.stdout, re.M)
    assert all(f == deb for f in fetched), f"apt downloaded {fetched}:\n{done.stdout}"
    return done.stdout


def executor(site: dict, counting: bool = False):
    from gce.sdk import Executor
    from gce.transport.message import ResultHeaders

    class Counting(Executor):
        """Counts every result by task id, duplicates included (the Executor drops them), each of a
        bundle of results too (gce.transport.bundles)."""

        answers: collections.Counter

        def _on_one_result(self, rh: ResultHeaders, body, headers):  # type: ignore[no-untyped-def]
            self.answers[rh.task_id] += 1
            super()._on_one_result(rh, body, headers)

    cls = Counting if counting else Executor
    ex = cls(endpoint_id=site["endpoint_id"], broker_url=site["url"])
    ex.answers = collections.Counter()  # type: ignore[attr-defined]
    return ex


def test_apt_installs_the_deb_offline_and_gce_version_says_so(debian, deb, site):
    site["before"] = gce_names(debian)
    started = time.monotonic()
    apt_install(debian, copy_in(debian, deb))
    print(f"apt install of {deb.name}: {time.monotonic() - started:.1f} s")
    assert debian.run("readlink /usr/bin/gce").stdout.strip() == "/opt/gce/bin/gce"
    version = debian.run("gce version").stdout
    assert version.startswith(f"gce {A}"), version
    assert "installed from the .deb" in version.lower(), version
    assert json.loads(debian.run("cat /opt/gce/packaged.json").stdout)["kind"] == "deb"


def test_a_multi_user_endpoint_enabled_on_boot_runs_a_task_as_the_mapped_user(debian, broker, site):
    from gce.commands.broker import set_yaml_key

    debian.run(f"useradd --create-home --shell /bin/sh {USER}")
    debian.run(f"gce configure {NAME} --multi-user --no-input")
    config_dir = debian.root / "etc/gce" / NAME
    assert (config_dir / "config.yaml").exists()
    endpoint_id = json.loads((debian.root / "var/lib/gce" / NAME / "endpoint.json").read_text())["endpoint_id"]
    endpoint_url, users = broker.provision(endpoint_id, users=[SUBMITTER])
    set_yaml_key(config_dir / "config.yaml", ("broker", "url"), endpoint_url)  # keeps owner and mode 0600
    with open(config_dir / "config.yaml", "a") as f:
        f.write("status_period: 1\n")  # the version the manager reports, without waiting 30 s
    # What the admin edits after gce configure --multi-user: who maps to whom, and a thread pool
    # (enough workers for the upgrade's tasks) instead of parsl's engine.
    (config_dir / "identity_mapping.json").write_text(json.dumps({
        "DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": SUBMITTER, "output": USER}]}))
    (config_dir / "user_config_template.yaml.j2").write_text(
        f"engine:\n  type: ThreadPoolEngine\n  max_workers: {WORKERS}\n")
    site.update(endpoint_id=endpoint_id, url=users[SUBMITTER])

    enabled = debian.run(f"gce enable-on-boot {NAME}", check=False)
    journal = debian.run(f"journalctl -u {UNIT} -n 40 --no-pager -o cat", check=False).stdout
    assert enabled.returncode == 0, f"{enabled.stdout}{enabled.stderr}{journal}"
    state = debian.wait_active(UNIT)  # active (running): Type=notify, so READY=1 was sent
    assert state["NRestarts"] == "0"
    unit = debian.show(UNIT, "Type", "FragmentPath", "UnitFileState", "ExecStart")
    shipped = "/usr/lib/systemd/system/gce-endpoint@.service"
    # Debian 12's systemd names it by /lib/systemd/system, the same directory (/lib is usr/lib).
    fragment = debian.run(f"readlink -f {unit['FragmentPath']}").stdout.strip()
    assert (unit["Type"], fragment, unit["UnitFileState"]) == ("notify", shipped, "enabled")
    assert "path=/usr/bin/gce" in unit["ExecStart"], unit["ExecStart"]
    written = debian.run("find /etc/systemd/system -name '*gce*'").stdout.split()
    assert written == [f"/etc/systemd/system/multi-user.target.wants/{UNIT}"]
    assert debian.run(f"readlink -f {written[0]}").stdout.strip() == shipped

    uid = int(debian.run(f"id -u {USER}").stdout)
    with executor(site) as ex:
        assert ex.submit(whoami).result(timeout=90) == (uid, USER)


@pytest.mark.parametrize("page", ["gce", "gce-start", "5 gce-config"])
def test_the_manual_prints(debian, page):
    shown = debian.run(f"man {page}", env={"MANPAGER": "cat", "MANWIDTH": "80"})
    title = page.split()[-1].upper()
    assert shown.stdout.lstrip().startswith(title), shown.stdout[:500]
    assert shown.stderr == ""


def complete(machine: Machine, line: str) -> list[str]:
    """What bash's completion of gce offers for LINE (the cursor at its end), through the
    function the shipped completion file registers, as an interactive bash would call it."""
    words = line.split(" ")
    script = (". /usr/share/bash-completion/bash_completion; __load_completion gce || exit 3; "
              "fn=$(complete -p gce | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p'); "
              f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
              f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9; "
              f"\"$fn\" gce {shlex.quote(words[-1])} {shlex.quote(words[-2])}; "
              "printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = machine.run(f"bash -c {shlex.quote(script)}")
    return sorted(w.strip() for w in done.stdout.splitlines() if w.strip())


def test_bash_completes_commands_and_endpoint_names(debian):
    assert {"start", "status", "stop"} <= set(complete(debian, "gce st"))
    assert all(w.startswith("st") for w in complete(debian, "gce st"))
    assert complete(debian, "gce start ") == [NAME]


def test_after_a_reboot_the_unit_is_active_and_runs_a_task(debian, site):
    debian.reboot()
    state = debian.wait_active(UNIT)
    assert state["NRestarts"] == "0"
    uid = int(debian.run(f"id -u {USER}").stdout)
    with executor(site) as ex:
        assert ex.submit(whoami).result(timeout=90) == (uid, USER)


def manager_version(site: dict) -> str | None:
    from gce.sdk import Client

    with Client(site["url"]) as client:
        return client.get_endpoint_status(site["endpoint_id"]).get("details", {}).get("gce_version")


@pytest.mark.timeout(600)
def test_an_upgrade_with_500_tasks_in_flight_answers_each_once_and_runs_version_b(debian, deb_b, site):
    import random

    before = debian.wait_active(UNIT)
    deb = copy_in(debian, deb_b)
    rng = random.Random(14)
    uid = int(debian.run(f"id -u {USER}").stdout)
    with executor(site, counting=True) as ex:
        futures = [ex.submit(slow, i, rng.uniform(1.0, 2.0)) for i in range(500)]
        wait_until(lambda: sum(f.done() for f in futures) >= WORKERS, timeout=120)  # running, results flowing
        at_upgrade = sum(f.done() for f in futures)
        started = time.monotonic()
        apt_install(debian, deb)
        after_upgrade = sum(f.done() for f in futures)
        print(f"upgrade to {B}: {time.monotonic() - started:.1f} s; tasks answered before it {at_upgrade}, "
              f"when it ended {after_upgrade}")
        results = [f.result(timeout=300) for f in futures]
        time.sleep(2)  # a late duplicate would arrive now
        answers = ex.answers  # type: ignore[attr-defined]
    # No WORKER_LOST or other failure among them, and some ran on each side of the upgrade.
    assert [r[:2] for r in results] == [(i, uid) for i in range(500)]
    ran_by = collections.Counter(r[2] for r in results)
    print(f"tasks run by version: {dict(ran_by)}")
    assert set(ran_by) == {A, B}
    twice = {t: n for t, n in answers.items() if n != 1}
    assert twice == {} and len(answers) == 500, f"answered more than once: {twice}"

    after = debian.wait_active(UNIT)
    assert after["MainPID"] != before["MainPID"]
    assert debian.run("gce version").stdout.startswith(f"gce {B}")
    argv = debian.run(f"cat /proc/{after['MainPID']}/cmdline").stdout.split("\0")
    assert argv[0].startswith("/opt/gce/bin/python") and argv[1:4] == ["/usr/bin/gce", "start", NAME], argv
    assert wait_until(lambda: manager_version(site) == B, timeout=30)  # what the running manager says


def test_apt_remove_stops_and_disables_every_gce_unit_and_keeps_the_configuration(debian, site):
    debian.run(f"{APT} remove gce", timeout=300)
    running = [p for p in debian.run("ps -eo args=").stdout.splitlines() if "gce" in p and not p.startswith("ps ")]
    assert running == []
    assert debian.run("systemctl list-units --all --no-legend 'gce*'").stdout == ""
    assert debian.run("systemctl list-unit-files --no-legend 'gce*'", check=False).stdout == ""
    assert debian.run("find /etc/systemd /usr/lib/systemd -name '*gce*'").stdout == ""
    assert debian.run("test -e /usr/bin/gce || test -e /opt/gce", check=False).returncode == 1
    assert debian.run(f"test -f /etc/gce/{NAME}/config.yaml && test -f /etc/default/gce").returncode == 0
    assert debian.run("dpkg-query -W -f '${db:Status-Abbrev}' gce").stdout.strip() == "rc"


def test_apt_purge_leaves_no_gce_file_but_what_the_test_made(debian, site):
    debian.run(f"{APT} purge gce", timeout=300)
    assert debian.run("dpkg-query -W gce", check=False).returncode == 1
    # The mapped user's own files, the .deb files copied in, and man-db's cache of the pages the
    # test displayed (man-db's to expire, not the package's).
    made = (f"/home/{USER}", "/srv/gce_", "/var/cache/man/")
    left = {p for p in gce_names(debian) - site["before"] if not p.startswith(made) and USER not in p}
    assert left == set()
    for path in ("/etc/gce", "/var/lib/gce", "/var/log/gce", "/run/gce", "/etc/default/gce"):
        assert debian.run(f"test -e {path}", check=False).returncode == 1, path
