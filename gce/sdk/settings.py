"""The SDK's local state: which broker to use, and the functions registered from this account.

The broker URL comes from, in order: the ``broker_url`` argument, ``$GCE_BROKER_URL``, or the
``broker_url`` key of ``sdk.yaml`` in ``$GCE_HOME`` (default ``~/.gce``). Its path is the
vhost, as for the endpoint: ``amqp://alice:secret@broker.example.org/gce``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from gce.sdk import serialize
from gce.sdk.errors import BrokerNotConfigured, SdkError, UnknownFunction
from gce.transport import connect, urls
from gce.transport.urls import redact

if TYPE_CHECKING:
    import pika

    from gce.sdk.registry import Registry

log = logging.getLogger(__name__)

ENV_URL = "GCE_BROKER_URL"


def gce_home() -> Path:
    home = os.environ.get("GCE_HOME")
    return Path(home) if home else Path.home() / ".gce"


def sdk_config_path() -> Path:
    return gce_home() / "sdk.yaml"


def functions_dir() -> Path:
    return gce_home() / "sdk" / "functions"


def _url_from_file(path: Path) -> str | None:
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BrokerNotConfigured(f"cannot read {path}: {e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        from gce.config.model import yaml_problem  # its message quotes no piece of the file

        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BrokerNotConfigured(f"{path} is not valid YAML{where}: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise BrokerNotConfigured(f"{path} must be a YAML mapping with a 'broker_url' key")
    url = data.get("broker_url")
    if url is not None and not isinstance(url, str):
        raise BrokerNotConfigured(f"'broker_url' in {path} must be a string like amqp://user:password@host/gce")
    if url and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # The URL holds a password: say so, but do not refuse (the owner decides).
        log.warning("%s holds a broker password but other users may read it: chmod 600 %s", path, path)
    return url or None


def resolve_broker_url(broker_url: str | None = None) -> str:
    """The broker URL to use; BrokerNotConfigured names all three places when there is none."""
    if broker_url:
        return broker_url
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    path = sdk_config_path()
    url = _url_from_file(path)
    if url:
        return url
    raise BrokerNotConfigured(
        f"no broker URL: pass broker_url=..., set ${ENV_URL}, or put 'broker_url: amqp://USER:PASSWORD@HOST/gce' "
        f"in {path} (the directory is $GCE_HOME when set)")


def broker_user(url: str) -> str:
    """The broker user name in URL: tasks carry it as user_id, which RabbitMQ checks."""
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise BrokerNotConfigured(f"the broker URL must start with amqp:// or amqps:// (got {redact(url)!r})")
    return urls.broker_user(url)


def connection_parameters(url: str, heartbeat: int, name: str) -> "list[pika.URLParameters]":
    """pika's parameters for each broker host URL lists (gce.transport.connect, as the endpoint's);
    NAME shows in the broker's connection list. BrokerNotConfigured when the URL cannot be used."""
    try:
        return connect.parameters(url, heartbeat=heartbeat, name=name)
    except connect.UnusableUrl as e:
        raise BrokerNotConfigured(str(e)) from None


def json_object(value: dict | None, what: str) -> dict:
    """A copy of VALUE, checked to travel as a JSON object header (user_endpoint_config, ...)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, not {type(value).__name__}")
    from gce.transport import limits

    try:
        limits.value_depth(value, limits.MAX_JSON_DEPTH)  # what endpoints accept; json.dumps recurses
        json.dumps(value)
    except limits.TooDeep as e:
        raise ValueError(f"{what} is refused: {e}; endpoints accept shallow objects of settings") from None
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serializable: {e}") from None
    return dict(value)


class RegistersFunctions:
    """``register_function`` and ``register_source_code``, shared by Executor and Client."""

    _functions: FunctionStore

    def register_function(self, function: Callable[..., Any], **_ignored: Any) -> str:
        """Serialize FUNCTION once and keep it; return its function_id (a hash of its content).

        It is also kept on the broker, so the id works from every host and process of this
        broker user (gce.sdk.registry). Globus Compute's extra keywords (function_name,
        description, ...) are accepted and ignored.
        """
        from gce.sdk.tasks import function_name

        return self._functions.add(*serialize.serialize_function(function), name=function_name(function))

    def register_source_code(self, source: str, function_name: str) -> str:
        """Register a function as source text, robust across Python versions; return its id."""
        return self._functions.add(*serialize.source_function(source, function_name), name=function_name)


class FunctionStore:
    """Function blobs by function_id: in memory, and optionally as files for later processes.

    A file holds ``serialize.pack([kind, blob])``; its id is recomputed on read, so a damaged
    or edited file is never run under the id it claims. With a REMOTE registry (on the broker,
    gce.sdk.registry) added functions go there too and unknown ids are looked up there.
    """

    def __init__(self, directory: Path | None = None, remote: Registry | None = None) -> None:
        self.directory = directory
        self.remote = remote
        self._blobs: dict[str, tuple[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def add(self, kind: bytes, blob: bytes, name: str = "") -> str:
        function_id = serialize.function_id_of(kind, blob)
        with self._lock:
            self._blobs[function_id] = (kind, blob)
        if self.directory is not None:
            self._write(function_id, kind, blob)
        if self.remote is not None:
            try:
                self.remote.put(function_id, kind, blob, name)
            except SdkError as e:  # it still runs from here: say why other hosts will not know it
                log.warning("gce: function %s is registered on this host only: %s", function_id, e)
        return function_id

    def _write(self, function_id: str, kind: bytes, blob: bytes) -> None:
        assert self.directory is not None
        path = self.directory / function_id
        if path.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")  # 0600; renamed whole, never half-written
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(serialize.pack([kind, blob]))
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def get(self, function_id: str) -> tuple[bytes, bytes]:
        with self._lock:
            found = self._blobs.get(function_id)
        if found is not None:
            return found
        directory = self.directory or functions_dir()
        if len(function_id) != 64 or not all(c in "0123456789abcdef" for c in function_id):
            raise UnknownFunction(function_id)  # also keeps odd ids from becoming paths
        try:
            kind, blob = serialize.unpack((directory / function_id).read_bytes())
            if serialize.function_id_of(kind, blob) != function_id:
                log.warning("ignoring %s: its content does not match its name", directory / function_id)
                raise ValueError("damaged")
        except (OSError, ValueError):
            if self.remote is None:
                raise UnknownFunction(function_id) from None
            kind, blob, _meta = self.remote.get(function_id)
            if self.directory is not None:
                self._write(function_id, kind, blob)
        with self._lock:
            self._blobs[function_id] = (kind, blob)
        return kind, blob
