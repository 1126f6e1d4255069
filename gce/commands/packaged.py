"""gce installed from a .deb or .rpm: what the package says about itself, and the systemd units.

A package build writes ``packaged.json`` into the venv it ships (``/opt/gce``): which kind of
package, its version, the environment file its units read and where it put the units. From a
source checkout the file is absent and gce behaves as it always has.

The units come from ``gce/templates/systemd/`` through ``render_unit``, the one renderer both the
package build and ``gce enable-on-boot`` use: ``python -m gce.commands.packaged units OUTDIR
--environment-file /etc/default/gce`` writes the two units a package ships.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from gce.errors import UsageError

TEMPLATE = "gce-endpoint@.service"
PACKAGED_GCE = "/usr/bin/gce"  # the packages' link to /opt/gce/bin/gce
_PLAIN = re.compile(r"^[A-Za-z0-9/._+:=-]+$")


@dataclass(frozen=True)
class Packaged:
    """The fields of ``packaged.json``, as the package build wrote them."""

    kind: str  # "deb" or "rpm"
    version: str
    environment_file: str  # /etc/default/gce or /etc/sysconfig/gce
    system_unit_dir: str  # where the package put gce-endpoint@.service
    user_unit_dir: str  # and the user manager's unit of the same name


def packaged_json() -> Path:
    return Path(sys.prefix) / "packaged.json"


def packaged(path: Path | None = None) -> Packaged | None:
    """What the package that installed this gce wrote about it; None from a source checkout."""
    path = path or packaged_json()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {path}", str(e), hint="reinstall the gce package") from None
    names = [f.name for f in fields(Packaged)]
    if not isinstance(raw, dict) or not all(isinstance(raw.get(n), str) and raw[n] for n in names):
        raise UsageError(f"cannot read {path}", f"it must be a JSON object with the strings {', '.join(names)}",
                         hint="reinstall the gce package")
    return Packaged(**{n: raw[n] for n in names})


def _quote(value: str) -> str:
    """VALUE as one word of a unit file: specifiers escaped, double-quoted unless plain."""
    if any(c in value for c in "\n\r\0"):
        raise UsageError(f"cannot write {value!r} into a unit file", "it contains a line break")
    value = value.replace("%", "%%")
    return value if _PLAIN.match(value) else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(user: bool, gce: str, gce_home: str | None, environment_file: str | None = None) -> str:
    """The unit file text: GCE runs ``gce start %i``, with GCE_HOME in its environment if set,
    reading ENVIRONMENT_FILE (a package's unit) if given."""
    import jinja2

    if environment_file is not None and not (environment_file.startswith("/") and _PLAIN.match(environment_file)):
        # EnvironmentFile= takes a bare path: no quoting, no specifiers
        raise UsageError(f"cannot use {environment_file!r} as the units' environment file",
                         "it must be an absolute path of letters, digits and /._+:=-")
    env = jinja2.Environment(loader=jinja2.PackageLoader("gce", "templates/systemd"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.get_template("gce-endpoint-user@.service" if user else TEMPLATE)
    return template.render(gce=_quote(gce), gce_home=_quote(f"GCE_HOME={gce_home}") if gce_home else "",
                           environment_file=environment_file or "")


def render_packaged_units(environment_file: str) -> dict[str, str]:
    """The two units a package ships, by their path under ``/usr/lib/systemd/``."""
    return {f"system/{TEMPLATE}": render_unit(False, PACKAGED_GCE, None, environment_file),
            f"user/{TEMPLATE}": render_unit(True, PACKAGED_GCE, None, environment_file)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gce.commands.packaged",
                                 description="Write the systemd units a gce package ships.")
    sub = ap.add_subparsers(dest="command", required=True)
    units = sub.add_parser("units", help="write OUTDIR/system/ and OUTDIR/user/gce-endpoint@.service")
    units.add_argument("outdir", type=Path)
    units.add_argument("--environment-file", required=True, help="/etc/default/gce or /etc/sysconfig/gce")
    args = ap.parse_args(argv)
    try:
        rendered = render_packaged_units(args.environment_file)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    for relative, text in rendered.items():
        path = args.outdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
