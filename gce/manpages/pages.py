"""Every page of gce's manual, by file name: what ``python -m gce.manpages DIR`` writes."""

from __future__ import annotations

from typing import Any

from gce.manpages import commands as command_pages
from gce.manpages import config as config_page


def environment() -> list[tuple[str, str]]:
    """The environment variables gce reads (a test greps gce/ for the names and finds each here)."""
    from gce.config.writer import BROKER_URL_ENV
    from gce.sdk.settings import ENV_URL

    return [
        ("GCE_HOME", "Where a user's endpoints and sdk.yaml live (default: ~/.gce). Set for root, it also "
                     "keeps root's endpoints there instead of /etc/gce, /var/lib/gce and /run/gce."),
        ("GCE_DEBUG", "When set (and not 0), errors also print their traceback (never with local variables)."),
        (BROKER_URL_ENV, "The broker URL gce configure writes when it is given none on the command line."),
        (ENV_URL, "The broker URL of the submitting user: gce.sdk and gce diagnostic --probe use it "
                  "before sdk.yaml."),
        ("SSL_CERT_FILE", "A file of CA certificates that an amqps broker's certificate is verified against "
                          "instead of the system's store (OpenSSL's own variable: gce names it when it cannot be "
                          "read or holds no certificate)."),
        ("NO_COLOR", "When set, gce prints no colours or styles (https://no-color.org)."),
        ("COLUMNS", "The width of tables when stdout is not a terminal."),
        ("TERM", "When dumb, gce shows no progress steps."),
        ("XDG_RUNTIME_DIR", "A user's endpoints put their control sockets in $XDG_RUNTIME_DIR/gce "
                            "(unless GCE_HOME is set); the systemd user manager is reached through it."),
        ("XDG_CONFIG_HOME", "gce enable-on-boot run by a user writes the unit to "
                            "$XDG_CONFIG_HOME/systemd/user (default: ~/.config/systemd/user)."),
        ("NOTIFY_SOCKET", "Set by systemd: gce start reports READY, STATUS, STOPPING and watchdog pings there."),
        ("WATCHDOG_USEC", "Set by systemd (with WATCHDOG_PID): how often gce start must ping the watchdog."),
        ("WATCHDOG_PID", "Set by systemd: the process the watchdog setting is meant for."),
        ("JOURNAL_STREAM", "Set by systemd: gce start logs in the journal's form when its stderr is still that stream."),
    ]


def files() -> list[tuple[str, str]]:
    from gce.config.paths import SYSTEM_CONFIG_DIR, system_endpoint_paths

    system = system_endpoint_paths("NAME")
    return [
        (str(system.config_file), "Root's endpoint NAME: its configuration (see gce-config(5))."),
        (str(SYSTEM_CONFIG_DIR / "NAME" / "user_config_template.yaml.j2"),
         "A multi-user endpoint's template of its user endpoints' configuration, and beside it "
         "user_config_schema.json, user_environment.yaml and the identity mapping file (see gce-config(5))."),
        (str(system.endpoint_json), "The endpoint's id."),
        (str(system.spool_dir), "Tasks accepted and not yet answered: they survive a stop, a crash and an upgrade."),
        (str(system.runtime_dir / "NAME.sock"), "The running endpoint's control socket."),
        (str(system.log_file), "The endpoint's log when it runs outside systemd (under systemd: the journal)."),
        ("~/.gce/NAME/", "A user's own endpoint NAME: config.yaml, endpoint.json, spool/ and endpoint.log "
                         "($GCE_HOME/NAME/ when GCE_HOME is set)."),
        ("~/.gce/sdk.yaml", "The broker URL gce.sdk uses (broker_url: ...)."),
        ("/usr/lib/systemd/system/gce-endpoint@.service",
         "The unit gce enable-on-boot enables for root's endpoints when gce was installed from a package; "
         "from a source checkout it writes /etc/systemd/system/gce-endpoint@.service."),
    ]


def all_pages(app: Any = None) -> dict[str, str]:
    """{file name: text} of every page, for APP (default: gce's own CLI)."""
    import typer.main

    if app is None:
        from gce.cli import app
    root = typer.main.get_command(app)
    found = list(command_pages.walk(root, ("gce",)))
    top = [c for c in found if len(c.path) == 2]
    pages = {"gce.1": command_pages.main_page(root, top, environment(), files())}
    for command in found:
        pages[f"{command.page_name}.1"] = command_pages.command_page(command, [])
    pages["gce-config.5"] = config_page.config_page()
    return pages
