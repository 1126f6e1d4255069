"""``systemctl reload`` (SIGHUP to a manager without a terminal): read the configuration again and
apply what is safe while the endpoint runs.

The new configuration is checked whole first (config.yaml against its schema; for a multi-user
endpoint also its identity mapping file, user config schema and user environment): one that
fails changes nothing, the old one stays in force and the failure is logged and shown in the
status until a good reload. A good one is applied setting by setting, one log line each:

- applied now: who may submit and how identities map (identity_mapping_config_path and timeout,
  allowed_identities, allowed_domains, min_uid, allow_privileged_mapping), allowed_functions
  (each user endpoint restarts once its tasks in flight are done: its next task obeys the new
  list), limits.max_payload_bytes and task_attempts, idle_timeout, display_name,
  broker.management_url, debug (the manager's log level);
- for user endpoints started from now on: user_config_template_path, user_config_schema_path,
  user_environment_path (a running one keeps what it was started from);
- only on a restart, logged as "needs a restart": the broker connection (broker.url,
  queue_type, prefetch, heartbeat), the endpoint's identity (endpoint.json), multi_user, the
  engine of a running user endpoint, limits.max_result_bytes and max_output_bytes (a running
  user endpoint sends results by the limits it was started with), status_period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING

from gce.config import model
from gce.config.model import EndpointConfig
from gce.errors import ConfigError, GceError

if TYPE_CHECKING:
    from gce.daemon.manager import Manager
    from gce.daemon.notify import Notifier

log = logging.getLogger(__name__)

# EndpointConfig field -> its key in config.yaml, for each setting a reload does not apply
NEEDS_RESTART = {
    "endpoint_id": "endpoint_id (endpoint.json)", "broker_url": "broker.url", "queue_type": "broker.queue_type",
    "prefetch": "broker.prefetch", "heartbeat": "broker.heartbeat", "multi_user": "multi_user", "engine": "engine",
    "max_result_bytes": "limits.max_result_bytes", "max_output_bytes": "limits.max_output_bytes",
    "status_period": "status_period",
}
APPLIED = {
    "display_name": "display_name", "management_url": "broker.management_url",
    "max_payload_bytes": "limits.max_payload_bytes", "task_attempts": "limits.task_attempts",
    "identity_mapping_config_path": "identity_mapping_config_path",
    "identity_mapping_timeout": "identity_mapping_timeout", "allowed_identities": "allowed_identities",
    "allowed_domains": "allowed_domains", "min_uid": "min_uid", "allow_privileged_mapping": "allow_privileged_mapping",
    "idle_timeout": "idle_timeout", "allowed_functions": "allowed_functions", "debug": "debug",
    "allowed_serializers": "allowed_serializers",
    "user_config_template_path": "user_config_template_path", "user_config_schema_path": "user_config_schema_path",
    "user_environment_path": "user_environment_path",
}
# what a running user endpoint was started with: it restarts (once idle) to take the new value
RESTARTS_USER_ENDPOINTS = ("allowed_functions", "allowed_serializers")


def has_terminal() -> bool:
    """Whether this process has a controlling terminal: then SIGHUP is its hang-up, and it stops."""
    try:
        os.close(os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY))
        return True
    except OSError:  # ENXIO: no controlling terminal (detached, or under systemd)
        return False


def check(m: Manager) -> EndpointConfig:
    """The endpoint's configuration as it is now on disk, checked whole; GceError if it is not usable."""
    new = model.load(m.paths)
    if new.multi_user:
        from gce.config import user_schema
        from gce.daemon import idmap, privileges

        if new.identity_mapping_config_path:
            idmap.mapper_for(new)  # reads and parses the mapping file: ConfigError if it is bad
        if new.user_config_schema_path:
            user_schema.load_schema(new.user_config_schema_path)
        if new.user_config_template_path and not os.path.isfile(new.user_config_template_path):
            raise ConfigError(f"cannot read the user config template {new.user_config_template_path}",
                              "it is not a file")
        if new.user_environment_path and os.path.exists(new.user_environment_path):
            _check_environment(new.user_environment_path, privileges.others_could_change(new.user_environment_path))
    return new


def _check_environment(path: str, problem: str | None) -> None:
    """user_environment.yaml must be root's and a mapping (at a user endpoint's start a bad one is
    ignored, with a log line: a reload says so before it takes effect)."""
    import yaml

    if problem:
        raise ConfigError(f"{path} is not safe to use", f"{problem}, so someone other than root could change it")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read {path}", str(e).replace("\n", " ")) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"invalid {path}", "it must hold a mapping of variable names to strings")


def changes(old: EndpointConfig, new: EndpointConfig) -> tuple[list[str], list[str]]:
    """(the config.yaml keys that changed and apply now, those that need a restart)."""
    changed = [f.name for f in dataclasses.fields(EndpointConfig)
               if f.compare and getattr(old, f.name) != getattr(new, f.name)]
    return [APPLIED[f] for f in changed if f in APPLIED], [NEEDS_RESTART[f] for f in changed if f in NEEDS_RESTART]


class Reloader:
    """Reloads of one manager; ``failure`` is why the last one failed, until a good one."""

    def __init__(self, m: Manager) -> None:
        self.m = m
        self.failure: str | None = None

    def status(self, text: str) -> str:
        """The status line TEXT, led by why the last reload failed while no good one followed."""
        return f"reload failed: {self.failure}; {text}" if self.failure else text

    def reload(self) -> bool:
        """Read the configuration again and apply it; False (old one kept) if it is not usable."""
        m = self.m
        log.info("reload: reading %s again", m.paths.config_file)
        try:
            new = check(m)
        except GceError as e:
            self.failure = str(e)
            log.error("reload failed, the configuration in force is unchanged: %s", e)
            return False
        except Exception as e:  # a bug must cost the reload, not the manager
            self.failure = f"{type(e).__name__}: {e}"
            log.exception("reload failed, the configuration in force is unchanged")
            return False
        self.failure = None
        old = m.config
        applied, restart = changes(old, new)
        # The settings that need a restart keep their running values, so every part of the
        # manager goes on agreeing with its broker connection and its user endpoints.
        kept = {f: getattr(old, f) for f in NEEDS_RESTART}
        self.apply(dataclasses.replace(new, **kept))
        for key in applied:
            log.info("reload: %s changed: applied", key)
        if restart:
            log.warning("reload: needs a restart: %s (systemctl restart gce-endpoint@%s, or gce restart %s)",
                        ", ".join(restart), m.paths.name, m.paths.name)
        if not applied and not restart:
            log.info("reload: the configuration is unchanged")
        return True

    def apply(self, config: EndpointConfig) -> None:
        m, old = self.m, self.m.config
        m.config = m.dispatcher.config = m.dispatcher.renewals.watch.config = config
        m.router.use(config)
        logging.getLogger().setLevel(logging.DEBUG if config.debug else logging.INFO)
        logging.getLogger("pika").setLevel(logging.INFO if config.debug else logging.WARNING)
        started_with = {f: getattr(config, f) for f in RESTARTS_USER_ENDPOINTS}
        for uep in [u for u in (m.dispatcher.uep, *m.dispatcher.ueps.values()) if u is not None]:
            uep.conf = dataclasses.replace(uep.conf, debug=config.debug, **started_with)
            changed = [f for f in RESTARTS_USER_ENDPOINTS if getattr(old, f) != getattr(config, f)]
            if changed:
                m.dispatcher.renewals.when_idle(uep, f"its {' and '.join(changed)} changed (reload)")


async def serve_reloads(reloader: Reloader, wanted: asyncio.Event, notifier: Notifier) -> None:
    """Each SIGHUP (WANTED set by its handler), one reload, told to systemd as RELOADING=1 then
    READY=1 (sd_notify(3); MONOTONIC_USEC= is what systemd 253 and later ask of a reload)."""
    from gce.daemon.notify import status_text
    from gce.daemon.snapshot import snapshot

    while True:
        await wanted.wait()
        wanted.clear()
        notifier.send(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))
        reloader.reload()
        notifier.send(READY="1", STATUS=reloader.status(status_text(snapshot(reloader.m))))
