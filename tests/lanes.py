"""Run the test suite as two pytest sessions side by side, so that waiting overlaps work.

The suite spends a third of its time waiting on things that barely use a core: Debian containers
booting, apt inside them, Slurm blocks running out their one-minute walltime. Those tests
(tests/packaging, tests/systemd, tests/slurm: the "machines" lane) run in one session while every
other test runs in another (the "main" lane). Each session has its own private broker and its own
temporary directory; only the main lane makes local test users; what both use (the rootfs and the
MPI program cached under GCE_TEST_CACHE) is built under a lock.

The main lane prints as it goes; the machines lane's output follows it, whole, when both are done.
The exit status is the first non-zero one of the two. Arguments are passed to both sessions (so are
PYTEST_ADDOPTS); ``GCE_TEST_LANES=1`` runs everything in one session, as plain pytest does.

    python tests/lanes.py [pytest arguments]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MACHINES = ("tests/packaging", "tests/systemd", "tests/slurm")


def _command(paths: list[str], basetemp: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", f"--basetemp={basetemp}", *extra, *paths]


def main(argv: list[str]) -> int:
    if os.environ.get("GCE_TEST_LANES") == "1":
        return subprocess.call([sys.executable, "-m", "pytest", "-q", *argv], cwd=ROOT)
    work = Path(tempfile.mkdtemp(prefix="gce-lanes-"))
    ignore = [f"--ignore={p}" for p in MACHINES]
    began = time.monotonic()
    with open(work / "machines.log", "w+") as log:
        machines = subprocess.Popen(_command(list(MACHINES), work / "machines", argv), cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            main_rc = subprocess.call(_command(["tests", *ignore], work / "main", argv), cwd=ROOT,
                                      stdin=subprocess.DEVNULL)
            main_took = time.monotonic() - began
            machines_rc = machines.wait()
        except BaseException:
            machines.terminate()  # its fixtures' teardown stops what it started
            machines.wait()
            raise
        machines_took = time.monotonic() - began
        log.seek(0)
        print(f"\n===== the machines lane ({', '.join(MACHINES)}) =====", flush=True)
        sys.stdout.write(log.read())
    print(f"\nlanes: main exit {main_rc} after {main_took:.0f} s; machines exit {machines_rc} after "
          f"{machines_took:.0f} s", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return main_rc or machines_rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
