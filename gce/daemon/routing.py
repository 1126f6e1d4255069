"""Where a multi-user (templated) endpoint's task runs: whose account, which user endpoint.

Pure decisions over the task's headers and the admin's files, made as the manager's user
(root for a multi-user endpoint): the identity is mapped and checked (gce.daemon.idmap), the
user's config is checked against the admin's schema as plain JSON, and a new user
endpoint's conf is built. Nothing a submitter sent is deserialized here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Union

from gce.config.model import EndpointConfig
from gce.config.uep import UepConfig, UepIdentity, UepTemplate, UserRuntime
from gce.config.paths import EndpointPaths
from gce.config.schema import SETUP_TEARDOWN
from gce.daemon import privileges
from gce.transport.message import ErrorCode, TaskHeaders

log = logging.getLogger(__name__)
MAPPED_FOR = 60.0  # seconds a mapping is reused while the mapping file does not change
REFUSED_FOR = 5.0  # seconds a refusal is reused (a burst from a refused identity maps once)
CANONICAL_KEPT = 1024  # distinct user configs whose check is remembered
MAPPING_THREADS = 4  # identities being mapped at once (an external program may take its timeout)
_PULLS_IN = re.compile(r"{%-?\s*(include|import|from|extends)\b")  # a template's tags that read other files


class Refused(Exception):
    """A task the manager answers itself, before any UEP sees it: CODE and a sentence."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


Mapped = Union[privileges.LocalUser, Refused]


def runtime_used(template: str | None, config: str) -> tuple[str, ...]:
    """Which of the submitter's runtime values a TEMPLATE (None: unreadable) and its CONFIG (as
    text) can reach: all of them through user_runtime or a file the template pulls in (not read
    here), python and gce through the variables a command may read."""
    if template is None or "user_runtime" in template or _PULLS_IN.search(template):
        return ("python", "gce", "platform")
    if any(name in text for name in ("GCE_USER_PYTHON_VERSION", "GCE_USER_SDK_VERSION") for text in (template, config)):
        return ("python", "gce")
    return ()


class UepSpec(NamedTuple):
    """What one user endpoint is started from, for a personal and a multi-user endpoint alike."""

    name: str  # in the log and the status: "default", or "<user>/<config digest>"
    conf: UepConfig  # its to_dict() goes to the UEP's stdin
    stderr_file: Path  # what it writes before its own log is set up


class Router:
    """The mapping and schema of one endpoint, each re-read only when its file changes.

    Mapping an identity may run the admin's program (up to its timeout) and ask NSS about
    the account (LDAP, say): it runs on a few threads of its own, never on the manager's
    loop, so one slow identity does not hold up anyone else's tasks. Outcomes are kept for
    a short while, and forgotten at once when the mapping file changes.
    """

    def __init__(self, paths: EndpointPaths, config: EndpointConfig) -> None:
        self.paths = paths
        self.config = config
        self._mapper: Any = None
        self._mapper_lock = threading.Lock()
        self._schema: tuple[tuple, dict] | None = None
        self._canonical: dict[str, str] = {}  # a user config's JSON -> its canonical_config
        self._mapped: dict[str, tuple[float, tuple, Mapped]] = {}  # identity -> (until, file signature, outcome)
        self._mapping: dict[str, asyncio.Future] = {}  # identity -> its mapping in progress
        self._pool: ThreadPoolExecutor | None = None
        self._runtime_use: tuple[tuple, tuple[str, ...]] | None = None  # template signature -> what it uses

    def _file_signature(self) -> tuple:
        try:
            st = os.stat(self.config.identity_mapping_config_path or "")
        except OSError:
            return ()
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def known_target(self, identity: str) -> Mapped | None:
        """IDENTITY's account (or refusal) when recently mapped with today's mapping file, else None."""
        if os.geteuid() != 0:
            return privileges.current_target()
        hit = self._mapped.get(identity)
        if hit is None:
            return None
        until, signature, outcome = hit
        if time.monotonic() < until and signature == self._file_signature():
            return outcome
        del self._mapped[identity]
        return None

    async def map(self, identity: str) -> Mapped:
        """Map IDENTITY on a mapping thread (one mapping per identity at a time) and remember it."""
        running = self._mapping.get(identity)
        if running is not None:
            return await asyncio.shield(running)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAPPING_THREADS, thread_name_prefix="gce-idmap")
        loop = asyncio.get_running_loop()
        signature = self._file_signature()
        future = self._mapping[identity] = loop.run_in_executor(self._pool, self._outcome, identity)
        try:
            outcome = await asyncio.shield(future)
        finally:
            del self._mapping[identity]
        ttl = REFUSED_FOR if isinstance(outcome, Refused) else MAPPED_FOR
        self._mapped[identity] = (time.monotonic() + ttl, signature, outcome)
        return outcome

    def _outcome(self, identity: str) -> Mapped:
        try:
            return self.target_of(identity)
        except Refused as e:
            return e
        except Exception:  # a bug must cost this identity's tasks, not the manager
            log.exception("mapping identity %r failed", identity)
            return Refused(ErrorCode.IDENTITY_NOT_MAPPED, f"identity {identity!r} could not be mapped on endpoint "
                           f"{self.config.name!r}: an internal error (the endpoint's log says why)")

    def use(self, config: EndpointConfig) -> None:
        """Map and check by CONFIG from now on (a reload): outcomes kept from the old one are forgotten."""
        with self._mapper_lock:
            self.config, self._mapper = config, None
        self._mapped.clear()
        self._schema = None
        self._canonical.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def target_of(self, identity: str) -> privileges.LocalUser:
        """The account IDENTITY's tasks run as: mapped when root, this process's own otherwise.
        Blocking (it may run the admin's mapping program): call it off the manager's loop."""
        if os.geteuid() != 0:
            return privileges.current_target()
        from gce.daemon import idmap, policy
        from gce.errors import GceError

        name = self.config.name
        try:
            with self._mapper_lock:
                if self._mapper is None:
                    self._mapper = idmap.mapper_for(self.config)
            local, rule = policy.map_identity(self._mapper, identity, self.config)
        except idmap.MappingRefused as e:
            log.warning("refused a task of %r (rule: %s): %s%s", identity, e.rule, e,
                        f"; {e.detail}" if e.detail else "")
            raise Refused(ErrorCode.IDENTITY_REFUSED if e.policy else ErrorCode.IDENTITY_NOT_MAPPED, str(e)) from None
        except GceError as e:
            log.error("cannot map identity %r: %s", identity, e)
            raise Refused(ErrorCode.IDENTITY_NOT_MAPPED, f"identity {identity!r} could not be mapped on endpoint {name!r}: "
                          "its identity mapping is unusable (the endpoint's log says why)") from None
        log.debug("identity %r maps to %s (uid %d) by %s", identity, local.name, local.uid, rule)
        return local

    def canonical_config(self, user_config: dict) -> str:
        """USER_CONFIG with the schema's defaults filled in, as canonical JSON: the key of its UEP,
        so that leaving a value out and giving its default share one user endpoint.

        Refused unless it fits the admin's schema (plain JSON: safe to check as root). Each
        distinct config is checked once per version of the schema file.
        """
        from gce.config import user_schema

        path = self.config.user_config_schema_path or ""
        raw = json.dumps(user_config, sort_keys=True)
        try:
            st = os.stat(path)
            signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if self._schema is None or self._schema[0] != signature:
                self._schema = None
                self._check_admin_file(path, "user config schema")
                self._schema = (signature, user_schema.load_schema(path))
                self._canonical.clear()
            canonical = self._canonical.get(raw)
            if canonical is None:
                schema = self._schema[1]
                user_schema.validate_user_config(schema, user_config, f"for endpoint {self.config.name!r}")
                canonical = json.dumps(user_schema.apply_defaults(schema, user_config), sort_keys=True)
                if len(self._canonical) >= CANONICAL_KEPT:
                    self._canonical.clear()
                self._canonical[raw] = canonical
            return canonical
        except user_schema.UserConfigInvalid as e:
            raise Refused(e.code, str(e)) from None
        except Refused:
            raise
        except user_schema.TemplateRenderError as e:
            log.error("%s", e)
            raise Refused(e.code, str(e)) from None
        except OSError as e:
            log.error("cannot read the user config schema %s: %s", path, e)
            raise Refused(user_schema.TemplateRenderError.code, f"endpoint {self.config.name!r} cannot read its "
                          "user config schema (the endpoint's log says why)") from None

    def runtime_key(self, th: TaskHeaders) -> str:
        """The part of TH's user endpoint's key that its submitter's runtime makes: "" unless the
        template (or config.yaml, which it may quote) uses the submitter's versions, as user_runtime
        or as the GCE_USER_* variables its worker_init or setup may read; then two submitter Pythons
        never share a user endpoint. For personal and multi-user templated endpoints alike."""
        used = self._runtime_used()
        values = {"python": th.python_version, "gce": th.gce_version, "platform": th.platform}
        return "".join(f"\0{name}={values[name]}" for name in used)

    def _runtime_used(self) -> tuple[str, ...]:
        path = self.config.user_config_template_path or ""
        try:
            st = os.stat(path)
            signature: tuple = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            signature = ()
        if self._runtime_use is None or self._runtime_use[0] != signature:
            try:
                text: str | None = Path(path).read_text(errors="replace")
            except OSError:
                text = None  # its UEP says why when it renders it
            self._runtime_use = (signature, runtime_used(text, json.dumps(self.config.raw)))
        return self._runtime_use[1]

    def _check_admin_file(self, path: str, what: str) -> None:
        """Refused when someone other than root could change the admin's file WHAT at PATH: the
        schema decides what users may send, the template what every user's endpoint runs."""
        from gce.config.user_schema import TemplateRenderError

        try:
            problem = privileges.others_could_change(path)
        except OSError:
            return  # reading it says why
        if problem:
            log.error("not using the %s %s: %s, so someone other than root could change it", what, path, problem)
            raise Refused(TemplateRenderError.code, f"endpoint {self.config.name!r} cannot use its {what} "
                          "(the endpoint's log says why)")

    def personal_uep(self) -> UepSpec:
        """An untemplated (personal) endpoint's one UEP: the engine of config.yaml."""
        run_dir = self.paths.state_dir / "uep"
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_file = self.paths.uep_log_dir / "default.log"
        conf = UepConfig(endpoint_id=self.config.endpoint_id, engine=self.config.engine, run_dir=str(run_dir),
                         max_result_bytes=self.config.max_result_bytes,
                         max_output_bytes=self.config.max_output_bytes,
                         allowed_functions=self.config.allowed_functions, log_file=str(log_file),
                         allowed_serializers=self.config.allowed_serializers,
                         debug=self.config.debug,
                         setup={k: self.config.raw[k] for k in SETUP_TEARDOWN if k in self.config.raw} or None)
        return UepSpec("default", conf, log_file)

    def templated_uep(self, target: privileges.LocalUser, canonical: str, th: TaskHeaders) -> UepSpec:
        """A multi-user endpoint's UEP for TARGET with one user config.

        The UEP renders its engine config itself, after the privilege drop.
        """
        from gce.config import user_schema

        self._check_admin_file(self.config.user_config_template_path or "", "user config template")
        digest = hashlib.sha256(f"{target.uid}\0{canonical}{self.runtime_key(th)}".encode()).hexdigest()[:16]
        dropped = privileges.must_drop(target)
        if dropped:  # the user's own files, created by the UEP as the user
            log_file = Path(target.home, ".gce", "uep-logs", self.config.name, f"{digest}.log")
            run_dir = Path(target.home, ".gce", "uep", self.config.name, digest)
        else:
            log_file = self.paths.uep_log_dir / f"{digest}.log"
            run_dir = self.paths.state_dir / "uep" / digest
        template = UepTemplate(
            name=self.config.name, template_path=self.config.user_config_template_path,
            schema_path=self.config.user_config_schema_path, parent_config=user_schema.parent_view(self.config.raw),
            user_config=json.loads(canonical),
            user_runtime=UserRuntime(th.python_version, th.gce_version, th.platform))
        conf = UepConfig(endpoint_id=self.config.endpoint_id, engine={}, run_dir=str(run_dir),
                         max_result_bytes=self.config.max_result_bytes,
                         max_output_bytes=self.config.max_output_bytes,
                         allowed_functions=self.config.allowed_functions, log_file=str(log_file),
                         allowed_serializers=self.config.allowed_serializers,
                         debug=self.config.debug, identity=UepIdentity.from_dict(target.identity()),
                         home=target.home if dropped else None, template=template)
        log.info("new user endpoint for %s (uid %d), config %s", target.name, target.uid, digest)
        return UepSpec(f"{target.name}/{digest}", conf, self.paths.uep_log_dir / f"{digest}.stderr")
