"""Fail when a file of the .rpm's stage needs a glibc newer than RHEL 8's (2.28).

    python3 packaging/rpm/check_glibc.py STAGEDIR [--max 2.28]

The venv is built on Debian 12 (glibc 2.36): a bundled .so compiled here (pystemd, built from
its sdist) or taken from a wheel newer than manylinux_2_28 could need a symbol RHEL 8 lacks, and
would then fail to load there, long after the install. `objdump -T` lists each ELF file's
undefined dynamic symbols with the version it needs; any GLIBC_x.y above --max fails the build
naming the file and the symbol. The highest GLIBCXX and CXXABI versions are reported too (RHEL 8's
libstdc++ has GLIBCXX_3.4.25 and CXXABI_1.3.11) but do not fail.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# "0000000000000000      DF *UND*	0000000000000000 (GLIBC_2.34) close_range"; binutils before
# 2.35 printed the version without the parentheses.
_NEEDED = re.compile(r"\*UND\*\s+[0-9a-f]+\s+\(?(GLIBC|GLIBCXX|CXXABI)_([0-9.]+)\)?\s+(\S+)$")


@dataclass(frozen=True)
class Need:
    file: Path
    library: str  # GLIBC, GLIBCXX or CXXABI
    version: tuple[int, ...]
    symbol: str

    def __str__(self) -> str:
        return f"{self.symbol}@{self.library}_{'.'.join(map(str, self.version))}"


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def needs(path: Path) -> list[Need]:
    """The versioned glibc/libstdc++ symbols PATH needs from the system."""
    proc = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        if "not a dynamic object" in proc.stderr:  # a static binary or an object file needs nothing
            return []
        raise RuntimeError(f"error: objdump -T {path} failed: {proc.stderr.strip()}")
    found = []
    for line in proc.stdout.splitlines():
        match = _NEEDED.search(line)
        if match:
            library, version, symbol = match.groups()
            found.append(Need(path, library, tuple(int(p) for p in version.split(".")), symbol))
    return found


def check(root: Path, most: tuple[int, ...]) -> tuple[list[Need], dict[str, Need]]:
    """(the needs of GLIBC symbols newer than MOST, the highest need of each library)."""
    too_new: list[Need] = []
    highest: dict[str, Need] = {}
    for path in elf_files(root):
        for need in needs(path):
            if need.library == "GLIBC" and need.version > most:
                too_new.append(need)
            if need.library not in highest or need.version > highest[need.library].version:
                highest[need.library] = need
    return too_new, highest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", type=Path)
    parser.add_argument("--max", default="2.28", help="the newest glibc allowed (default: RHEL 8's, 2.28)")
    args = parser.parse_args(argv)
    most = tuple(int(p) for p in args.max.split("."))
    too_new, highest = check(args.stage, most)
    for library in ("GLIBC", "GLIBCXX", "CXXABI"):
        if library in highest:
            need = highest[library]
            print(f"highest {library} needed: {need} by {need.file.relative_to(args.stage)}")
    for need in too_new:
        print(f"error: {need.file.relative_to(args.stage)} needs {need}: newer than glibc {args.max} "
              f"(RHEL 8), it would not load there", file=sys.stderr)
    if too_new:
        print("hint: pin a wheel built for an older manylinux in packaging/requirements.lock, "
              "or build that extension on an older system", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
