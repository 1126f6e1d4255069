"""Whether the config a user endpoint was started from has changed since.

A user endpoint whose blocks kept failing (its engine's breaker is open) waits for the admin: to
run `gce resume`, or to fix the config. A fixed config must be enough, so the manager compares a
digest taken when the user endpoint was made with one of the files as they are now, and replaces
a failing user endpoint whose config changed (Renewals, which also restarts one on `gce resume`). A personal endpoint's user endpoint is started from
config.yaml's engine section; a multi-user endpoint's renders the admin's template with the
user's values checked against the schema, so those two files' contents are what it comes from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from gce.config.model import EndpointConfig
from gce.config.paths import EndpointPaths
from gce.daemon.children import UepChild
from gce.daemon.states import UepState

log = logging.getLogger(__name__)


def engine_digest(engine: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(engine, sort_keys=True, default=str).encode()).hexdigest()


def template_digest(config: EndpointConfig) -> str | None:
    """The digest of the user config template and schema as they are now; None if one is unreadable."""
    h = hashlib.sha256()
    for path in (config.user_config_template_path, config.user_config_schema_path):
        try:
            h.update(Path(path or "").read_bytes() if path else b"")
        except OSError as e:
            log.warning("cannot read %s to see whether it changed: %s", path, e)
            return None
        h.update(b"\0")
    return h.hexdigest()


def started_from(config: EndpointConfig, engine: dict[str, Any] | None = None) -> str | None:
    """The digest of what a new user endpoint starts from: ENGINE for a personal endpoint's, the
    template and schema files for a multi-user endpoint's."""
    return template_digest(config) if config.multi_user else engine_digest(engine or {})


def signature(paths: EndpointPaths, config: EndpointConfig) -> tuple:
    """The stat of the files a user endpoint is started from: while it stays, so does their digest,
    and reading them again (each task of a failing user endpoint asks) is not needed."""
    files = ((config.user_config_template_path, config.user_config_schema_path) if config.multi_user
             else (str(paths.config_file),))
    found: list[tuple] = []
    for path in files:
        try:
            st = os.stat(path or "")
            found.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            found.append(())
    return tuple(found)


def current(paths: EndpointPaths, config: EndpointConfig) -> tuple[str, dict[str, Any] | None] | None:
    """(the digest of the config as it is now, a personal endpoint's engine section); None when it
    cannot be read or is not valid now (the user endpoint keeps the config it has)."""
    if config.multi_user:
        digest = template_digest(config)
        return None if digest is None else (digest, None)
    from gce.config import model
    from gce.errors import GceError

    try:
        engine = model.load(paths).engine
    except GceError as e:
        log.warning("config.yaml changed but cannot be used (the user endpoint keeps its engine): %s", e)
        return None
    return engine_digest(engine), engine


class Watch:
    """The config files of one endpoint, read again only when their stat changed since a user
    endpoint's last look (each task of a failing user endpoint asks)."""

    def __init__(self, paths: EndpointPaths, config: EndpointConfig) -> None:
        self.paths = paths
        self.config = config
        self._seen: dict[str, tuple] = {}  # user endpoint key -> the stat of the files at its last look

    def changed(self, key: str, digest: str | None) -> tuple[str, dict[str, Any] | None] | None:
        """(the new digest, a personal endpoint's new engine section) when the config differs from
        DIGEST, what user endpoint KEY was made from; None when it does not, or cannot be used."""
        stat = signature(self.paths, self.config)
        if self._seen.get(key) == stat:
            return None
        self._seen[key] = stat
        found = current(self.paths, self.config)
        return None if found is None or found[0] == digest else found


class Renewals:
    """Failing user endpoints started afresh: on a change of their config, or on `gce resume`. Not
    resumed in place: the tasks one answered BLOCKS_FAILING may still sit in its interchange's
    queue, and would run on its first good block. Tasks routed to one meanwhile wait in its queue."""

    def __init__(self, watch: Watch, stop_event: asyncio.Event) -> None:
        self.watch = watch
        self.stop_event = stop_event
        self._renewing: set[str] = set()  # keys of UEPs being restarted

    def renewing(self, uep: UepChild) -> bool:
        return uep.key in self._renewing

    def if_changed(self, uep: UepChild) -> bool:
        """Restart UEP from its config as it is now if its blocks kept failing and that config
        changed since it was made (read again only when its files' stat changed); True if it does."""
        if not uep.blocks_failing or uep.state is not UepState.RUNNING or not self._take_changed_config(uep):
            return False
        log.warning("user endpoint %s: its config changed while its blocks were failing: restarting it from the "
                    "new config", uep.key)
        self._renew(uep)
        return True

    def asked(self, uep: UepChild) -> None:
        """`gce resume`: restart UEP, from its config as it is now (the admin may have just fixed it)."""
        if self.renewing(uep):
            return
        changed = self._take_changed_config(uep)
        log.info("user endpoint %s: restarting it fresh%s, as asked (gce resume)", uep.key,
                 " from its changed config" if changed else "")
        self._renew(uep)

    def _take_changed_config(self, uep: UepChild) -> bool:
        """Have UEP start next from its config as it is now, if that changed since it was made."""
        found = self.watch.changed(uep.key, uep.config_digest)
        if found is None:
            return False
        digest, engine = found
        uep.config_digest = digest
        if engine is not None:  # a personal endpoint's: the new engine section
            uep.conf = dataclasses.replace(uep.conf, engine=engine)
        return True

    def when_idle(self, uep: UepChild, why: str) -> None:
        """Restart UEP once its tasks in flight are done (a reload changed what it is started with);
        tasks routed to it meanwhile wait for the fresh one."""
        if self.renewing(uep) or uep.state in (UepState.STOPPED, UepState.STOPPING):
            return  # it takes its new config at its next start
        log.info("user endpoint %s: restarting it once its tasks in flight are done: %s", uep.key, why)
        self._renewing.add(uep.key)
        asyncio.ensure_future(self._drained(uep))

    async def _drained(self, uep: UepChild) -> None:
        while (uep.in_flight or uep.state is UepState.STARTING) and not self.stop_event.is_set():
            await asyncio.sleep(0.2)
        await self._restart(uep)

    def _renew(self, uep: UepChild) -> None:
        self._renewing.add(uep.key)
        asyncio.ensure_future(self._restart(uep))

    async def _restart(self, uep: UepChild) -> None:
        try:
            await uep.stop()
        finally:
            self._renewing.discard(uep.key)
        if uep.state is UepState.STOPPED and not self.stop_event.is_set():
            await uep.start()  # READY hands it the tasks queued meanwhile
