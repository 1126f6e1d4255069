"""Whether the config a user endpoint was started from has changed since.

A user endpoint whose blocks kept failing (its engine's breaker is open) waits for the admin: to
run `gce resume`, or to fix the config. A fixed config must be enough, so the manager compares a
digest taken when the user endpoint was made with one of the files as they are now, and replaces
a failing user endpoint whose config changed. A personal endpoint's user endpoint is started from
config.yaml's engine section; a multi-user endpoint's renders the admin's template with the
user's values checked against the schema, so those two files' contents are what it comes from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from gce.config.model import EndpointConfig
from gce.config.paths import EndpointPaths

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
