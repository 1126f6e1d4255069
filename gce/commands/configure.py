"""gce configure: create a new endpoint's config.yaml and endpoint id."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gce import output
from gce.commands import configure_prompts as prompts
from gce.commands import DEFAULT_NAME, read_url_file
from gce.config.paths import endpoint_paths
from gce.errors import UsageError

if TYPE_CHECKING:
    from gce.config.writer import NewEndpoint, Written


class Engine(str, enum.Enum):
    htex = "htex"
    process = "process"
    thread = "thread"
    mpi = "mpi"


class Provider(str, enum.Enum):
    local = "local"
    slurm = "slurm"


def _broker_url(url: str | None, url_file: Path | None, on_argv: bool = True) -> tuple[str, bool]:
    from gce.config import writer
    from gce.transport import urls

    if url is not None and url_file is not None:
        raise UsageError("conflicting options", "give --broker-url or --broker-url-file, not both")
    if url_file is not None:
        url = writer.check_broker_url(read_url_file(url_file))
        if urls.has_password(url) and os.stat(url_file).st_mode & 0o077:
            output.warning(f"{url_file} holds a password and other users may read it; chmod 600 {url_file}")
        return url, False
    if url is not None:
        if urls.has_password(writer.check_broker_url(url)) and on_argv:
            output.warning(
                "the broker password was given on the command line, where other users of this machine can "
                "see it (ps, shell history); --broker-url-file FILE keeps it out of sight"
            )
        return url, False
    return writer.default_broker_url()


def command(
    name: Annotated[str, typer.Argument(
        metavar="[NAME]", show_default=False,
        help="A name for the new endpoint: up to 63 letters, digits, '.', '_' and '-'; default: default.")
    ] = DEFAULT_NAME,
    broker_url: Annotated[
        Optional[str],
        typer.Option(
            "--broker-url", metavar="URL", show_default=False,
            help="The broker URL, amqps://USER:PASSWORD@HOST:5671/VHOST. Prefer --broker-url-file: "
            "a password on the command line is visible to other users. "
            "Default: $GCE_ENDPOINT_BROKER_URL, else a placeholder to complete in config.yaml.",
        ),
    ] = None,
    broker_url_file: Annotated[
        Optional[Path],
        typer.Option(
            "--broker-url-file", metavar="PATH", show_default=False,
            help="Read the broker URL from the first line of this file (recommended: "
            "the password stays out of the command line).",
        ),
    ] = None,
    display_name: Annotated[
        str, typer.Option("--display-name", metavar="TEXT", help="A human-readable name; default: NAME.")
    ] = "",
    engine: Annotated[
        Optional[Engine],
        typer.Option(
            "--engine", case_sensitive=False, show_default=False,
            help="What runs the functions: process (a pool of worker processes on this machine; the default), "
            "htex (parsl workers in blocks, on this machine or in batch jobs; the default with --provider), "
            "thread (a thread pool) or mpi (MPI programs, MPIFunction: parsl's MPIExecutor, its blocks on this "
            "machine or in batch jobs).",
        ),
    ] = None,
    provider: Annotated[
        Optional[Provider],
        typer.Option(
            "--provider", case_sensitive=False, show_default=False,
            help="With htex or mpi: where its blocks of workers run, local (this machine; the default) or slurm "
            "(one Slurm job per block). Without --engine it means htex.",
        ),
    ] = None,
    max_workers: Annotated[
        Optional[int],
        typer.Option(
            "--max-workers", min=1, metavar="N", show_default=False,
            help="Functions run at the same time (per node for htex); default: the number of CPUs.",
        ),
    ] = None,
    partition: Annotated[Optional[str], typer.Option(
        "--partition", metavar="NAME", show_default=False,
        help="With --provider slurm: the partition of the jobs; default: the cluster's default one.")] = None,
    account: Annotated[Optional[str], typer.Option(
        "--account", metavar="NAME", show_default=False,
        help="With --provider slurm: the account the jobs are charged to; default: your default one.")] = None,
    walltime: Annotated[Optional[str], typer.Option(
        "--walltime", metavar="TIME", show_default=False,
        help="With --provider slurm: each job's time limit, as sbatch --time reads it; default: 01:00:00.")] = None,
    multi_user: Annotated[
        bool,
        typer.Option(
            "--multi-user",
            help="Create a templated endpoint: each user's tasks run in a user endpoint whose engine "
            "comes from a template filled with values the user sends. Run by root, it maps each "
            "submitter to a local account and runs their tasks as that account. The template sets "
            "the engine: --engine and --max-workers do not apply.",
        ),
    ] = False,
    no_input: Annotated[
        bool, typer.Option("--no-input", help="Ask nothing, even on a terminal: options and defaults only.")
    ] = False,
) -> None:
    """Create a new endpoint.

    Writes NAME's config.yaml (commented: edit it, e.g. to run workers through a batch
    scheduler) and gives the endpoint a new endpoint id. Then start it with gce start NAME.

    On a terminal, without options that answer them (and without --no-input), gce asks for
    the broker URL (not shown as it is typed), the engine, the number of workers and, for
    Slurm, the partition, account and time limit; each answer stands for the option of the
    same name.

    With --multi-user it also writes the user config template (user_config_template.yaml.j2),
    the schema of the values users may send (user_config_schema.json), the user endpoints'
    environment (user_environment.yaml) and, as root, an example identity mapping file to edit.
    """
    from gce.config import writer
    from gce.transport import urls

    paths = endpoint_paths(name)
    chosen = prompts.Choices(broker_url, broker_url_file, engine and engine.value, provider and provider.value,
                             max_workers, partition, account, walltime)
    asked = prompts.wanted(chosen, multi_user, no_input)
    if asked:
        writer.refuse_existing(paths, name)  # before the questions, not after them
        chosen = prompts.ask(name, os.cpu_count() or 1)
    url, placeholder = _broker_url(chosen.broker_url, chosen.broker_url_file, on_argv=not asked)
    ep = writer.NewEndpoint(
        name=name, broker_url=url, engine=chosen.engine or writer.default_engine(chosen.provider), max_workers=chosen.max_workers or os.cpu_count() or 1,
        provider=chosen.provider or "local", partition=chosen.partition or "", account=chosen.account or "",
        walltime=chosen.walltime or writer.DEFAULT_WALLTIME, display_name=display_name, default_url=placeholder,
        multi_user=multi_user, identity_mapping=multi_user and os.geteuid() == 0,
    )
    written = writer.write(paths, ep)
    if multi_user:
        _report_multi_user(ep, written, url, placeholder)
        return
    output.success(f"created endpoint {name} (id {ep.endpoint_id})")
    output.line(f"  config: {written.config_file} (mode {written.config_mode:04o})")
    output.line(f"  id:     {written.endpoint_json}")
    output.line(f"  broker: {urls.redact(url)}")
    output.line(f"  engine: {_describe_engine(ep)}")
    if placeholder:
        output.line(f"next: put the broker's address and credentials in broker.url of {written.config_file},")
        output.line(f"      then run: gce start {name}")
    else:
        output.line(f"next: gce start {name}  (add --detach to run it in the background)")
    if asked:
        output.line(f"the same without questions: {chosen.command_line(name)}")


def _describe_engine(ep: NewEndpoint) -> str:
    from gce.config import writer

    per = {"htex": " per node", "mpi": " per block (each an MPI task)"}.get(ep.engine, "")
    text = f"{writer.ENGINES[ep.engine]}, {ep.max_workers} worker{'s' if ep.max_workers > 1 else ''}{per}"
    if ep.provider == "slurm":
        where = ", ".join(f"{k} {v}" for k, v in (("partition", ep.partition), ("account", ep.account),
                                                   ("walltime", ep.walltime)) if v)
        text += f", in Slurm jobs ({where})"
    return text


def _report_multi_user(ep: NewEndpoint, written: Written, url: str, placeholder: bool) -> None:
    """What `gce configure --multi-user` wrote, and the steps left before the endpoint serves users."""
    from gce.config import writer
    from gce.transport import urls

    labels = {writer.TEMPLATE_FILE: "template", writer.SCHEMA_FILE: "schema",
              writer.ENVIRONMENT_FILE: "environment", writer.IDENTITY_MAPPING_FILE: "mapping"}
    name = ep.name
    kind = "multi-user" if ep.identity_mapping else "templated"
    output.success(f"created {kind} endpoint {name} (id {ep.endpoint_id})")
    output.line(f"  config:      {written.config_file} (mode {written.config_mode:04o})")
    output.line(f"  id:          {written.endpoint_json}")
    for path in written.files:
        output.line(f"  {labels.get(path.name, path.name) + ':':<12} {path}")
    output.line(f"  broker:      {urls.redact(url)}")
    if not ep.identity_mapping:
        output.line("  every user's tasks run as you: only root maps users to their own accounts")
    steps = []
    if ep.identity_mapping:
        mapping = next(p for p in written.files if p.name == writer.IDENTITY_MAPPING_FILE)
        steps.append(f"edit the rules of {mapping} (the example maps alice@example.org to alice)")
    if placeholder:
        steps.append(f"gce broker provision --endpoint {name} --user USER@DOMAIN --credentials FILE "
                     f"(or put the broker's URL in broker.url of {written.config_file})")
    steps.append(f"check the template: gce render-user-config {name} --user-config FILE.json")
    steps.append(f"gce start {name}  (add --detach to run it in the background)")
    for i, step in enumerate(steps, 1):
        output.line(f"{'next:' if i == 1 else '':<5} {i}. {step}")
