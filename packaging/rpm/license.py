"""Print the .rpm's License tag: an SPDX expression of gce's license and each bundled one.

    python3 packaging/rpm/license.py STAGEDIR/usr/share/doc/gce/bundled-licenses.txt

Its input is what packaging/licenses.py wrote from each distribution's metadata ("NAME VERSION:
LICENSE; CLASSIFIER ..."), whose names are SPDX identifiers or trove classifiers. A name that is
not one of those below fails the build: an rpm's License tag must not guess.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SPDX = {"Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "LGPL-2.1-or-later", "MIT", "MPL-2.0", "PSF-2.0"}
ALIASES = {
    "Apache 2.0": "Apache-2.0", "Apache Software License": "Apache-2.0", "MIT License": "MIT",
    "ISC License": "ISC", "ISC License (ISCL)": "ISC", "LGPL-2.1+": "LGPL-2.1-or-later",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
}
# Distributions whose metadata names no precise license ("BSD License" is any BSD); read from
# the license file each ships in its .dist-info directory.
READ_FROM_FILE = {"jinja2": "BSD-3-Clause"}
_LINE = re.compile(r"^(\S+) (\S+): (.+)$")


def spdx_of(name: str, stated: str) -> str:
    if name.lower() in READ_FROM_FILE:
        return READ_FROM_FILE[name.lower()]
    for alternative in stated.split("; "):
        found = alternative if alternative in SPDX else ALIASES.get(alternative)
        if found:
            return found
    raise ValueError(f"error: cannot name the license of {name} in SPDX: its metadata says {stated!r}\n"
                     f"hint: read its license file and add it to READ_FROM_FILE (or ALIASES) in {__file__}")


def expression(listing: str) -> str:
    licenses = []
    for line in listing.splitlines():
        match = _LINE.match(line)
        if match:
            licenses.append(spdx_of(match.group(1), match.group(3)))
    if "Apache-2.0" not in licenses:  # gce's own comes first; an empty list is a broken stage
        raise ValueError("error: the bundled-licenses list does not name gce (Apache-2.0)\n"
                         "hint: rebuild the stage with packaging/build-venv.sh")
    return " AND ".join(["Apache-2.0", *sorted(set(licenses) - {"Apache-2.0"})])


def main(argv: list[str]) -> int:
    try:
        print(expression(Path(argv[0]).read_text()))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
