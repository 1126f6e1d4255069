"""A private one-node Slurm cluster for the tests of this package.

munged, slurmctld and slurmd run in the foreground as children of the test process, with every
state, spool, pid, log and socket path under one temporary directory and on free ports, so they
never meet a site's Slurm or munge (nor the ones Debian's packages may have started). The
recipe is RECIPES.md, "Slurm one-node cluster"; the directory is in /tmp, mode 0711, because
munged refuses a socket whose parent directories are not searchable by everyone. For the
module's duration ``SLURM_CONF`` names the private slurm.conf: a personal endpoint passes its
user's environment on to its user endpoint, so parsl's ``sbatch`` and ``scancel`` find it
(without that, they would read the absent /etc/slurm/slurm.conf and the tests would fail).

Teardown cancels every job, runs ``scontrol shutdown`` and ``munged --stop``, kills whatever
of the cluster is left and removes the directory.

Nothing is installed here: ``make test`` installs ``slurm-wlm`` and ``munge``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

SBIN = "/usr/sbin:/sbin"
DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "sacct", "srun")
BOOT_TIMEOUT = 30.0
ACTIVE_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"

SLURM_CONF = """\
ClusterName=gcetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
PlugStackConfig={dir}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=2
# The node is whatever this machine is: take the configured size as the truth.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:  # the daemons bind 0.0.0.0 and have no option to do otherwise
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def require_slurm() -> dict[str, str]:
    """Absolute paths of the Slurm and munge programs; skip when not root, fail when missing."""
    if os.geteuid() != 0:
        pytest.skip("the Slurm tests run munged, slurmctld and slurmd as root: run them as root")
    search = f"{os.environ.get('PATH', '')}:{SBIN}"
    found = {name: shutil.which(name, path=search) for name in DAEMONS + CLIENTS}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        pytest.fail(f"error: cannot start a Slurm cluster: {', '.join(missing)} not found\n"
                    "hint: make test (it installs slurm-wlm and munge), or apt-get install -y slurm-wlm munge",
                    pytrace=False)
    return {name: str(path) for name, path in found.items()}


class SlurmCluster:
    """munged + slurmctld + slurmd under DIRECTORY; ``env`` is what a client command needs."""

    def __init__(self, directory: Path, programs: dict[str, str]) -> None:
        self.dir = directory
        self.programs = programs
        self.conf = directory / "slurm.conf"
        self.munge_socket = directory / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}

    # -- start ------------------------------------------------------------------------
    def start(self) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir()
        (self.dir / "plugstack.conf").write_text("")
        self.conf.write_text(SLURM_CONF.format(dir=self.dir, ctld_port=_free_port(), slurmd_port=_free_port(),
                                               cpus=os.cpu_count() or 1))
        self._start_munge()
        self._spawn("slurmctld", "-D")
        self._spawn("slurmd", "-D", "-N", "localhost")
        self._wait_idle()

    def _start_munge(self) -> None:
        key = self.dir / "munge.key"
        subprocess.run([self.programs["mungekey"], "--create", f"--keyfile={key}"], check=True, capture_output=True)
        self._spawn("munged", "--foreground", f"--socket={self.munge_socket}", f"--key-file={key}",
                    f"--log-file={self.dir / 'munged.log'}", f"--pid-file={self.dir / 'munged.pid'}",
                    f"--seed-file={self.dir / 'munged.seed'}")
        self._wait(lambda: self.munge_socket.exists(), "munged to create its socket", self.dir / "munged.log")

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.dir / f"{name}.out", "ab") as out:
            self.procs[name] = subprocess.Popen([self.programs[name], *args], stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=out, env=self.env, cwd=self.dir, start_new_session=True)

    def _wait_idle(self) -> None:
        def idle() -> bool:
            r = self.run("sinfo", "--noheader", "--format=%t", check=False)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        self._wait(idle, "the node to be idle in sinfo", self.dir / "slurmctld.log", self.dir / "slurmd.log")

    def _wait(self, predicate: Callable[[], bool], what: str, *logs: Path) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not predicate():
            dead = [f"{n} exited with status {p.returncode}" for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = "; ".join(dead) or f"not within {BOOT_TIMEOUT:g} s"
                details = "\n".join(f"--- {log}:\n{_tail(log)}" for log in (*logs, *self.dir.glob("*.out")))
                raise RuntimeError(f"the private Slurm cluster did not start: waited for {what}: {why}\n{details}")
            time.sleep(0.1)

    # -- use ----------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a Slurm client command (e.g. "squeue", "-h") against this cluster."""
        r = subprocess.run([self.programs[args[0]], *args[1:]], env=self.env, capture_output=True, text=True,
                           timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed with status {r.returncode}: {r.stderr.strip()}")
        return r

    def hold_node(self, seconds: int = 120) -> str:
        """Submit a job that takes the whole node, so the next job waits (pending, reason Resources);
        return its id once it runs. Its output goes to the cluster's directory, not the cwd."""
        r = self.run("sbatch", "--parsable", "--exclusive", "--job-name=blocker",
                     f"--output={self.dir / 'blocker-%j.out'}", f"--wrap=sleep {seconds}")
        job_id = r.stdout.strip().split(";")[0]
        deadline = time.monotonic() + 15
        while self.active_jobs().get(job_id) != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        return job_id

    def job_state(self, job_id: str) -> str:
        """JobState of JOB_ID as scontrol reports it (accounting is off, so no sacct)."""
        for field in self.run("scontrol", "--oneliner", "show", "job", job_id).stdout.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        raise RuntimeError(f"scontrol show job {job_id} printed no JobState")

    def active_jobs(self) -> dict[str, str]:
        """Job id -> state of every job not yet finished (pending, running, completing...)."""
        out = self.run("squeue", "--noheader", f"--states={ACTIVE_STATES}", "--format=%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    # -- stop ---------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel every job, stop the daemons, kill what is left, remove the directory."""
        try:
            if self._alive("slurmctld"):
                self._cancel_all_jobs()
                self.run("scontrol", "shutdown", check=False)
            if self._alive("munged"):
                self._stop_munge()
        finally:
            self._kill_leftovers()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def _stop_munge(self) -> None:
        # munged --stop waits until kill(pid, 0) fails, which a zombie never does: reap it meanwhile.
        stopper = subprocess.Popen([self.programs["munged"], "--stop", f"--socket={self.munge_socket}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.procs["munged"].wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass  # killed with the leftovers
        stopper.wait(timeout=15)

    def _cancel_all_jobs(self) -> None:
        jobs = self.active_jobs()
        if jobs:
            self.run("scancel", *jobs, check=False)
        deadline = time.monotonic() + 15
        while self.active_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)

    def _kill_leftovers(self) -> None:
        """Kill daemons and job processes of this cluster that outlived the shutdown."""
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        left = [p for p in psutil.process_iter(["name", "cmdline", "environ", "status"]) if self._owns(p)]
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=5)

    def _owns(self, p: psutil.Process) -> bool:
        """A live daemon, job step or job process of this cluster. Not merely any process with our
        SLURM_CONF: whatever the tests started meanwhile (a broker, say) inherited it too."""
        env = p.info["environ"] or {}
        if p.pid == os.getpid() or p.info["status"] == psutil.STATUS_ZOMBIE:
            return False
        if str(self.dir) in " ".join(p.info["cmdline"] or []):
            return True
        slurm_process = (p.info["name"] or "").startswith(("slurm", "munge")) or "SLURM_JOB_ID" in env
        return env.get("SLURM_CONF") == str(self.conf) and slurm_process


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A running private Slurm cluster; SLURM_CONF points at it while the module runs."""
    programs = require_slurm()
    # Not under pytest's tmp_path, which is private to root: see the module's docstring.
    directory = Path(tempfile.mkdtemp(prefix="gce-slurm-"))
    directory.chmod(0o711)
    cluster = SlurmCluster(directory, programs)
    try:
        cluster.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
def endpoint(broker, slurm, tmp_path, monkeypatch, request):
    """A personal endpoint (named by the module's NAME) whose HTEX block is a job of the test
    cluster; stopped at the end, with nothing of it left running."""
    from tests.endpoint import Endpoint, processes_under, wait_until
    from tests.slurm.test_stop_cancels_jobs import slurm_engine

    home = tmp_path / "home"
    monkeypatch.setenv("GCE_HOME", str(home))
    ep = Endpoint(broker, home, name=request.module.NAME, engine="htex")
    ep.set(engine=slurm_engine())
    yield ep
    ep.stop()
    wait_until(lambda: not processes_under(home), timeout=30)
