"""Write packaging/requirements.lock: every runtime dependency of gce pinned, with the sha256 of
the one file pip takes for it on Debian 12's /usr/bin/python3.11 (a cp311 manylinux x86_64 wheel
where one exists; pystemd has none and builds from its sdist against libsystemd); and
packaging/build-requirements.lock: the tools that build gce's wheel and pystemd's (setuptools,
wheel, cython), pinned the same way, so the build needs no unpinned download either.

Run by `make lock`. It resolves gce's dependencies (and the systemd extra) in a throwaway venv
as `make venv` would, held to the `==` pins of the test extra, so the packages ship the versions
the tests ran with. Nothing is installed: pip's --dry-run --report names each file and its hash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"
BUILD_LOCK = ROOT / "packaging" / "build-requirements.lock"
BUILD_TOOLS = ["setuptools>=61", "wheel", "cython"]  # gce's [build-system] and pystemd's
PYTHON = "/usr/bin/python3.11"  # the interpreter the packaged venv is built on


def test_pins() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [r for r in project["optional-dependencies"]["test"] if "==" in r]


def resolve(work: Path, requirements: list[str]) -> list[tuple[str, str, str, str]]:
    if not (work / "venv").exists():
        subprocess.run([PYTHON, "-m", "venv", str(work / "venv")], check=True)
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{pin}\n" for pin in test_pins()))
    report = work / "report.json"
    subprocess.run([str(work / "venv/bin/pip"), "install", "--quiet", "--dry-run", "--ignore-installed",
                    "--report", str(report), "-c", str(constraints), *requirements], check=True)
    pins = []
    for item in json.loads(report.read_text())["install"]:
        meta = item["metadata"]
        if meta["name"] == "gce":
            continue
        archive = item["download_info"]
        sha256 = archive.get("archive_info", {}).get("hashes", {}).get("sha256") \
            or archive["archive_info"]["hash"].split("=", 1)[1]
        pins.append((meta["name"].lower(), meta["version"], sha256, archive["url"].rsplit("/", 1)[1]))
    return sorted(pins)


def write(lock: Path, what: str, pins: list[tuple[str, str, str, str]]) -> None:
    lines = [f"# {what}: the build installs them with",
             f"#   pip install --require-hashes --no-deps -r packaging/{lock.name}",
             "# and never resolves anew. Regenerate with `make lock` (python3.11 packaging/lock.py) after",
             "# changing pyproject.toml's dependencies; review the diff.",
             ""]
    for name, version, sha256, filename in pins:
        lines.append(f"{name}=={version} --hash=sha256:{sha256}  # {filename}")
    lock.write_text("\n".join(lines) + "\n")
    print(f"{lock}: {len(pins)} pins")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gce-lock.") as work:
        runtime = resolve(Path(work), [f"{ROOT}[systemd]"])
        build = resolve(Path(work), BUILD_TOOLS)
    write(LOCK, "The exact files the packaged venv (/opt/gce) is built from", runtime)
    write(BUILD_LOCK, "The tools that build gce's wheel and pystemd's, used only during the build", build)
    return 0


if __name__ == "__main__":
    sys.exit(main())
