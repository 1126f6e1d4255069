"""Benchmark rows of gce's .deb, beside bench.py (deb-size, deb-install; root: they boot a container).

- deb-size: the .deb's file size and its installed size, both `dpkg-deb -f Installed-Size` and
  `du -s /opt/gce` in a booted Debian 12 after `apt install`, against the venv of Globus Compute's
  agent: `pip install globus-compute-endpoint` into a throwaway venv (bench/.peers/gc-size, made
  afresh in the same run and removed after), measured whole and its site-packages. Goal ≤ 0.5x.
- deb-install: seconds from `apt install ./gce_V_amd64.deb` to an active unit in a freshly booted
  container (tests/systemd's rootfs): install, `gce configure NAME --multi-user`, `gce
  enable-on-boot NAME`, until systemd says active (running): Type=notify, so READY=1 was sent.
  The clock stops while the test broker gets the endpoint's account (a broker admin's step).

The module is not named packaging.py: bench/ comes first on sys.path when bench.py runs, and
would shadow the `packaging` library that pip and others import.

bench.py runs it with --only deb-size,deb-install; alone: .venv/bin/python bench/packages.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("deb-size", "deb-install")
ROOT = Path(__file__).resolve().parent.parent
PEER_VENV = ROOT / "bench" / ".peers" / "gc-size"
APT = ("DEBIAN_FRONTEND=noninteractive apt-get -y -o Acquire::http::Proxy=http://127.0.0.1:9 "
       "-o Acquire::https::Proxy=http://127.0.0.1:9 -o Acquire::Retries=0")
MiB = 2**20


def du_bytes(path: Path) -> int:
    """Disk usage of PATH (du -s), in bytes."""
    return int(subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def peer_venv() -> tuple[int, int]:
    """(whole venv, its site-packages) in bytes: globus-compute-endpoint installed now, as pip does
    for a user, into a venv of Debian's Python; the venv is removed afterwards."""
    shutil.rmtree(PEER_VENV, ignore_errors=True)
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "globus-compute-endpoint"], check=True)
        site = next(PEER_VENV.glob("lib/python3*/site-packages"))
        return du_bytes(PEER_VENV), du_bytes(site)
    finally:
        shutil.rmtree(PEER_VENV, ignore_errors=True)


def install_to_active(deb: Path, broker, workdir: Path) -> tuple[float, int]:
    """Seconds from apt install to the unit active (READY), and du -s of /opt/gce then, in a
    freshly booted container."""
    from gce.commands.broker import set_yaml_key
    from tests.systemd.container import Machine, ensure_rootfs

    machine = Machine(workdir, name="gcebench")
    try:
        machine.unpack(ensure_rootfs())
        machine.boot()
        shutil.copy(deb, machine.root / "srv" / deb.name)
        (machine.root / "srv" / deb.name).chmod(0o644)
        started = time.monotonic()
        machine.run(f"{APT} install /srv/{deb.name}", timeout=300)
        machine.run("gce configure bench --multi-user --no-input")
        paused = time.monotonic()
        endpoint_id = json.loads((machine.root / "var/lib/gce/bench/endpoint.json").read_text())["endpoint_id"]
        endpoint_url, _users = broker.provision(endpoint_id)
        set_yaml_key(machine.root / "etc/gce/bench/config.yaml", ("broker", "url"), endpoint_url)
        started += time.monotonic() - paused
        machine.run("gce enable-on-boot bench")
        machine.wait_active("gce-endpoint@bench.service", timeout=120)
        seconds = time.monotonic() - started
        installed = int(machine.run("du -s --block-size=1 /opt/gce").stdout.split()[0])
        return seconds, installed
    finally:
        machine.destroy()


def run(only: set[str], rounds: int, s, rows: list) -> None:
    """Add the .deb rows when ONLY selects them, beside bench.py's setup S (its broker)."""
    if not only & set(NAMES):
        return
    if os.geteuid() != 0:
        print(f"skipped {', '.join(n for n in NAMES if n in only)}: they need root, to boot a container",
              flush=True)
        return
    from tests.packaging.build import package

    deb = package("deb")
    with tempfile.TemporaryDirectory(prefix="gce-bench-deb-") as tmp:
        runs = [install_to_active(deb, s.broker, Path(tmp) / f"round{i}") for i in range(max(1, rounds // 2))]
    opt_gce = statistics.median(r[1] for r in runs)
    if "deb-size" in only:
        declared = int(subprocess.run(["dpkg-deb", "-f", str(deb), "Installed-Size"], capture_output=True,
                                      text=True, check=True).stdout) * 1024  # KiB (Debian policy 5.6.20)
        venv, site = peer_venv()

        def row(name: str, ours: int, peer: int, target: float = 0.5) -> None:
            r = ours / peer
            rows.append((name, f"{ours / MiB:.1f} MiB", f"{peer / MiB:.1f} MiB", f"{r:.2f}x", f"≤ {target}x",
                         r <= target))

        row(".deb file size (vs globus-compute-endpoint's installed venv)", deb.stat().st_size, venv)
        row("installed: du -s /opt/gce (vs globus-compute-endpoint's venv, du -s)", opt_gce, venv)
        row("installed: dpkg Installed-Size (vs that venv's site-packages, du -s)", declared, site)
    if "deb-install" in only:
        seconds = statistics.median(r[0] for r in runs)
        rows.append(("apt install ./gce.deb + configure + enable-on-boot to an active unit (READY)",
                     f"{seconds:.1f} s", "-", "-", "active", True))
        print(f"deb-install: {', '.join(f'{r[0]:.1f}' for r in runs)} s", flush=True)


def main() -> int:
    """These rows alone, on a private broker as bench.py sets it up."""
    import argparse

    import bench  # noqa: E402 - bench/ is the script's directory

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", default=",".join(NAMES))
    args = ap.parse_args()
    rows: list[bench.Row] = []
    with tempfile.TemporaryDirectory(prefix="gce-bench-packages-") as tmp:
        s = bench.Setup(Path(tmp))
        try:
            run(set(args.only.split(",")), args.rounds, s, rows)
        finally:
            s.close()
    return bench.print_rows(rows, "gce", "globus-compute") if rows else 0


if __name__ == "__main__":
    sys.exit(main())
