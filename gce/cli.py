"""The ``gce`` command: registers one module per subcommand and turns errors into exit codes.

This is the only place where a ``GceError`` becomes a message and an exit code
(STYLE.md, "Errors become exit codes at the edge only"). Anything else that escapes a
command is a bug: it is reported in one line with exit code 70, and its traceback (never
with local variables, which may hold secrets) is shown only when ``GCE_DEBUG=1``.
typer's own usage errors keep their exit code 2.

Command modules import their heavy dependencies (parsl, pika, textual, jinja2) inside the
command function, so ``gce --help`` stays fast.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from gce import output
from gce.commands import broker, broker_revoke, configure, delete, idmap, list_, restart, start, status, stop, version
from gce.commands import render_user_config
from gce.commands import enable_on_boot
from gce.commands import diagnostic
from gce.commands import logs
from gce.commands import blocks, tasks
from gce.commands import resume
from gce.commands import monitor
from gce.commands import import_
from gce.commands import whoami
from gce.commands import audit
from gce.errors import EX_SOFTWARE, EX_USAGE, GceError, debug_enabled

# Exceptions that typer itself turns into the right exit code and message.
_TYPER_EXITS = (typer.Exit, typer.Abort, typer.TyperException, EOFError, BrokenPipeError)
_BRACED = re.compile(r"\{([A-Z][A-Z0-9_]*(?:\.\.\.)?)\}")
_Context = TyperGroup.context_class


class _PlainUsageContext(_Context):  # type: ignore[misc, valid-type]
    class formatter_class(_Context.formatter_class):  # type: ignore[misc, name-defined]
        """typer writes a required argument as {NAME} in usage lines; gce's help text and
        README write NAME, as click itself and most tools do."""

        def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
            super().write_usage(prog, _BRACED.sub(r"\1", args), prefix)


def _plain_usage(cmd: Any) -> Any:
    """CMD, and the commands of a group below it, with usage lines that say NAME."""
    if cmd is not None:
        cmd.context_class = _PlainUsageContext
        for sub in getattr(cmd, "commands", {}).values():
            _plain_usage(sub)
    return cmd


class GceGroup(TyperGroup):
    """The root command group: runs a subcommand and reports its failure."""

    context_class = _PlainUsageContext

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return _plain_usage(super().get_command(ctx, cmd_name))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _TYPER_EXITS:
            raise
        except GceError as exc:
            if debug_enabled():
                output.traceback(exc)
            output.error(exc)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            debug = debug_enabled()
            if debug:
                output.traceback(exc)
            output.internal_error(exc, traceback_shown=debug)
            raise typer.Exit(EX_SOFTWARE) from None


app = typer.Typer(
    cls=GceGroup,
    name="gce",
    help="Run and manage gce endpoints: they execute Python functions sent by gce.sdk users "
    "through a RabbitMQ broker.",
    epilog="Start with: gce configure NAME, then gce start NAME --detach.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion; NAME arguments complete endpoints
    # Plain help: typer's rich help imports ~130 ms of modules (rich.markdown, markdown_it...),
    # which would make `gce --help` twice as slow. Tables and messages still use rich.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _print_version(value: bool) -> None:
    if value:
        from gce import __version__

        output.line(f"gce {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version_: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                  help="Show gce's version and exit (gce version tells the libraries' too)."),
    config_dir: Optional[Path] = typer.Option(
        None, "-c", "--config-dir", metavar="DIR", show_default=False,
        help="The directory that holds the endpoints (as Globus Compute's option): the same as setting GCE_HOME. "
        "Default: $GCE_HOME, else ~/.gce (/etc/gce for root)."),
) -> None:
    if config_dir is not None:
        use_config_dir(config_dir)


# One line per command; the order is the order of `gce --help`.
app.command("version")(version.command)
app.command("configure")(configure.command)
app.command("start")(start.command)
app.command("stop")(stop.command)
app.command("restart")(restart.command)
app.command("status")(status.command)
app.command("blocks")(blocks.command)
app.command("resume")(resume.command)
app.command("tasks")(tasks.command)
app.command("logs")(logs.command)
app.command("audit")(audit.command)
app.command("list")(list_.command)
app.command("monitor")(monitor.command)
app.command("delete")(delete.command)
app.command("import")(import_.command)
app.command("render-user-config")(render_user_config.command)
app.command("diagnostic")(diagnostic.command)
app.command("whoami")(whoami.command)
app.command("enable-on-boot")(enable_on_boot.enable)
app.command("disable-on-boot")(enable_on_boot.disable)
broker.app.command("revoke")(broker_revoke.revoke)
app.add_typer(broker.app, name="broker")
app.add_typer(idmap.app, name="idmap")


def use_config_dir(path: Path) -> None:
    """Make PATH the endpoints' directory for this command and the processes it starts (a detached
    manager, its user endpoints): they all read GCE_HOME (gce.config.paths)."""
    path = path.expanduser().absolute()  # a detached manager runs from "/"
    if path.exists() and not path.is_dir():
        raise GceError(f"invalid --config-dir {str(path)!r}", "it is not a directory",
                       hint="give the directory that holds the endpoints, e.g. ~/.gce", exit_code=EX_USAGE)
    os.environ["GCE_HOME"] = str(path)


def main() -> None:
    """The console-script entry point (``gce = "gce.cli:main"``)."""
    app(prog_name="gce")


if __name__ == "__main__":
    main()
