"""Print each distribution installed beside this interpreter (the packaged venv), its version and
its license, as its own metadata states them: the package's copyright names this list.

Run by packaging/build-venv.sh with the venv's python (-I: only the venv's site-packages).
"""

from __future__ import annotations

import importlib.metadata
import sys


def license_of(meta: importlib.metadata.PackageMetadata) -> str:
    expression = meta.get("License-Expression")
    if expression:
        return expression
    classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    text = (meta.get("License") or "").strip()
    # Some put the whole license text in License:; its first line names it well enough here.
    short = text.splitlines()[0].strip() if text else ""
    found = [x for x in [short, *classifiers] if x and x != "UNKNOWN"]
    return "; ".join(dict.fromkeys(found)) or "not stated in its metadata (see its files in /opt/gce)"


def main() -> int:
    dists = {d.metadata["Name"].lower(): d for d in importlib.metadata.distributions(path=sys.path)}
    print("Python distributions bundled in /opt/gce, with their versions and licenses as their")
    print("metadata states them (each one's license file is in its .dist-info directory there).")
    print()
    for name in sorted(dists):
        d = dists[name]
        print(f"{d.metadata['Name']} {d.version}: {license_of(d.metadata)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
