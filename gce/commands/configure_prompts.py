"""What `gce configure NAME` asks on a terminal; every answer stands for one of its options.

The questions come only when standard input and output are a terminal, no option that answers
one was given and --no-input was not: a script or a CI job (no stdin) never waits for an answer.
The answers fill in the same ``Choices`` the options do, so the non-interactive path remains
the one that checks values and writes files; at the end the equivalent command is shown.
Nothing is written before the last answer: Ctrl-C or Ctrl-D at any question (typer turns
both into ``Abort``) leaves no endpoint behind.

The broker URL is read without echo (it holds the endpoint account's password), and is never
printed back but redacted; it may also be answered with the path of a file holding it.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from gce import output

T = TypeVar("T")
KINDS = {"thread": ("thread", None), "process": ("process", None), "htex": ("htex", "local"),
         "slurm": ("htex", "slurm"), "mpi": ("mpi", "local"),
         "mpi-slurm": ("mpi", "slurm")}  # an answer to "engine" -> (--engine, --provider)


@dataclass
class Choices:
    """The options of `gce configure` that a question can answer; None: not given."""

    broker_url: Optional[str] = None
    broker_url_file: Optional[Path] = None
    engine: Optional[str] = None
    provider: Optional[str] = None
    max_workers: Optional[int] = None
    partition: Optional[str] = None
    account: Optional[str] = None
    walltime: Optional[str] = None

    def given(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def command_line(self, name: str) -> str:
        """The `gce configure` command that makes the same endpoint without a question."""
        args = ["gce", "configure", name]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "broker_url" and value is not None:
                args += ["--broker-url-file", "FILE"]  # never the password: FILE would hold the URL
            elif value not in (None, ""):
                args += [f"--{f.name.replace('_', '-')}", str(value)]
        return shlex.join(args)


def wanted(given: Choices, multi_user: bool, no_input: bool) -> bool:
    """True when gce may ask: a person at a terminal who did not answer on the command line."""
    return not (no_input or multi_user or given.given()) and sys.stdin.isatty() and sys.stdout.isatty()


def _ask(text: str, default: str, check: Callable[[str], T], hidden: bool = False) -> T:
    """Ask TEXT until CHECK accepts the answer (Enter: DEFAULT); CHECK raises ValueError(reason)."""
    while True:
        answer = typer.prompt(text, default=default, show_default=bool(default) and not hidden,
                              hide_input=hidden)
        try:
            return check(answer.strip())
        except ValueError as e:
            output.line(f"  not accepted: {e}; try again", style="red")


def _broker(answer: str) -> tuple[Optional[str], Optional[Path], str]:
    """(URL, None, URL) for a URL, (None, FILE, its URL) for a file holding one, (None, None, "")
    for the default. The answer is hidden: a reason never repeats it (it may be a password)."""
    from gce.commands import read_url_file
    from gce.config import writer
    from gce.errors import UsageError

    if not answer:
        return None, None, ""
    if "://" in answer:
        if not re.match(r"^amqps?://", answer):
            raise ValueError("a broker URL starts with amqp:// or amqps://")
        if re.search(r"\s", answer):
            raise ValueError("a broker URL has no spaces")
        return answer, None, answer
    path = Path(answer).expanduser()
    if not path.is_file():
        raise ValueError("that is neither an amqp:// or amqps:// URL nor a file")
    try:
        return None, path, writer.check_broker_url(read_url_file(path))
    except UsageError as e:
        raise ValueError(str(e)) from None


def _engine(answer: str) -> str:
    kind = answer.lower()
    if kind not in KINDS:
        raise ValueError(f"answer one of {', '.join(KINDS)}")
    return kind


def _workers(answer: str) -> int:
    if not answer.isdigit() or int(answer) < 1:
        raise ValueError("answer a whole number of at least 1")
    return int(answer)


def _slurm_name(answer: str) -> str:
    from gce.config import writer

    if answer and not writer.SLURM_NAME.match(answer):
        raise ValueError("one name of at most 64 characters, without spaces or commas")
    return answer


def _walltime(answer: str) -> str:
    from gce.config import writer

    if not writer.WALLTIME.match(answer):
        raise ValueError("answer MINUTES, MINUTES:SECONDS or HOURS:MINUTES:SECONDS, e.g. 01:00:00")
    return answer


def ask(name: str, cpus: int) -> Choices:
    """Ask the questions on the terminal; the answers as the options they stand for."""
    from gce.config import writer
    from gce.transport.urls import redact

    output.line(f"Configuring endpoint {name}. Enter takes the [default]; Ctrl-C stops without writing anything.")
    env_url, placeholder = writer.default_broker_url()
    later = "fill it in config.yaml later" if placeholder else f"${writer.BROKER_URL_ENV}, {redact(env_url)}"
    url, url_file, read = _ask(
        f"Broker URL (amqps://USER:PASSWORD@HOST:5671/VHOST), or a file holding it; typing is not shown "
        f"[Enter: {later}]", "", _broker, hidden=True)
    if read:  # the answer was not shown: say what was understood, without the password
        output.line(f"  broker: {redact(read)}" + (f" (from {url_file})" if url_file else ""))
    kind = _ask("Engine: process (worker processes on this machine), thread, htex (parsl workers in blocks on "
                "this machine), slurm (parsl workers in Slurm jobs), mpi or mpi-slurm (MPI programs here or in "
                "Slurm jobs)", "process", _engine)
    engine, provider = KINDS[kind]
    per = {"htex": " on each node", "mpi": " in each block (MPI tasks)"}.get(engine, "")
    workers = _ask(f"Functions run at the same time{per}", str(cpus), _workers)
    choices = Choices(broker_url=url, broker_url_file=url_file, engine=engine, provider=provider,
                      max_workers=workers)
    if provider == "slurm":
        choices.partition = _ask("Slurm partition [Enter: the cluster's default]", "", _slurm_name)
        choices.account = _ask("Slurm account to charge [Enter: your default]", "", _slurm_name)
        choices.walltime = _ask("Time limit of each Slurm job", writer.DEFAULT_WALLTIME, _walltime)
    return choices

