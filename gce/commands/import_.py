"""gce import: a Globus Compute endpoint directory, converted into a new gce endpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from gce import output
from gce.commands import read_url_file
from gce.config.paths import endpoint_paths

# The endpoint was created, but some settings of the source were left out (each one is listed).
EXIT_INCOMPLETE = 1


def _broker_url(url_file: Path | None) -> tuple[str, bool]:
    from gce.config import writer

    if url_file is None:
        return writer.default_broker_url()
    return writer.check_broker_url(read_url_file(url_file)), False


def command(
    path: Annotated[Path, typer.Argument(
        metavar="PATH", show_default=False,
        help="The Globus Compute endpoint's directory, e.g. ~/.globus_compute/NAME.")],
    name: Annotated[Optional[str], typer.Argument(
        metavar="[NAME]", show_default=False,
        help="The new gce endpoint's name; default: the directory's name.")] = None,
    broker_url_file: Annotated[Optional[Path], typer.Option(
        "--broker-url-file", metavar="PATH", show_default=False,
        help="Read the broker URL from the first line of this file. Default: $GCE_ENDPOINT_BROKER_URL, "
        "else a placeholder to complete in config.yaml (Globus Compute's endpoints name no broker).")] = None,
) -> None:
    """Create a gce endpoint from a Globus Compute endpoint's directory.

    Converts its config.yaml (engine, provider and launcher settings, display_name, multi_user,
    allowed_functions...), and for an endpoint whose user endpoints come from a template, its
    user_config_template.yaml.j2, user_config_schema.json, user_environment.yaml and (as root)
    its identity mapping file. The endpoint id in its endpoint.json is kept, so scripts that name
    it keep working. Each setting that could not be carried over is listed, one line each, with
    the reason. The source directory is only read, never changed; an existing gce endpoint is
    never overwritten.

    Exit status: 0 when every setting was carried over; 1 when the endpoint was created but some
    settings were left out (listed); gce's usual codes on errors (73: NAME exists already).
    """
    from gce.config import import_files, importer
    from gce.errors import UsageError
    from gce.daemon.client import mapping_rules
    from gce.transport import urls

    source = importer.read_source(path)
    name = name or source.path.name
    paths = endpoint_paths(name)
    target = paths.config_dir.absolute()
    if target == source.path or source.path in target.parents:
        raise UsageError(f"cannot import {source.path} as {name!r}", "the new endpoint would be written inside it",
                         hint="choose another NAME or -c/--config-dir: gce import never writes into its source")
    url, placeholder = _broker_url(broker_url_file)
    out = importer.convert(source, url, may_map=os.geteuid() == 0, check_mapping=lambda doc: mapping_rules(doc, ""))
    importer.check_id(out)
    import_files.check_template(out, name)
    import_files.write(paths, name, out, source, importer.secret(out))
    kind = "templated endpoint" if out.config.get("multi_user") else "endpoint"
    output.success(f"imported {kind} {name} (id {out.endpoint_id}) from {source.path}")
    output.line(f"  config: {paths.config_file}")
    for file in out.files:
        output.line(f"  file:   {paths.config_dir / file}")
    output.line(f"  broker: {urls.redact(url)}")
    lines = importer.report_lines(out)
    if lines:
        output.line(f"not carried over ({len(lines)}):")
        for line in lines:
            output.line(f"  {line}")
    if placeholder:
        output.line(f"next: put the broker's address and credentials in broker.url of {paths.config_file}")
    else:
        output.line(f"next: gce start {name}  (add --detach to run it in the background)")
    if lines:
        raise typer.Exit(EXIT_INCOMPLETE)
