"""A root multi-user endpoint for tests, with real local accounts (created and removed here)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psutil
import yaml

from gce.config.paths import endpoint_paths
from gce.daemon import launcher
from tests.endpoint import environ as test_environ

USERS = {"alice@uni.edu": "gcetest-mu-a", "bob@uni.edu": "gcetest-mu-b", "root@uni.edu": "root"}
TEMPLATE = """engine:
  type: ThreadPoolEngine
  max_workers: {{ workers }}
"""
SCHEMA = {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 1, "maximum": 4, "default": 2}},
          "additionalProperties": False}


def expression_mapping(users: dict) -> dict:
    """A GCS expression mapping document sending each identity of USERS to its local user."""
    return {"DATA_TYPE": "expression_identity_mapping#1.0.0",
            "mappings": [{"source": "{username}", "match": k.replace(".", "\\."), "output": v}
                         for k, v in users.items()]}


def kill_processes_of(name: str) -> None:
    uid = pwd.getpwnam(name).pw_uid
    for p in psutil.process_iter(["uids"]):
        if p.info["uids"] and p.info["uids"].real == uid:
            try:
                p.kill()
            except psutil.Error:
                pass


def processes_of(names) -> list[str]:
    uids = {pwd.getpwnam(n).pw_uid for n in names}
    found = []
    for p in psutil.process_iter(["uids", "cmdline", "status"]):
        try:
            if p.info["uids"] and p.info["uids"].real in uids and p.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:100]}")
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def local_accounts(names=("gcetest-mu-a", "gcetest-mu-b"), users: dict = USERS, groups: dict | None = None):
    """Create the local accounts NAMES (with homes) for real, each a member of the supplementary
    groups GROUPS gives it (created here too); remove them, their processes and the groups after.
    Yields the identities of USERS with their passwd entries."""
    groups = groups or {}
    made, made_groups = [], []
    try:
        for group in sorted({g for gs in groups.values() for g in gs}):
            subprocess.run(["groupdel", group], capture_output=True)
            subprocess.run(["groupadd", "-K", "GID_MIN=1000", group], check=True)
            made_groups.append(group)
        for name in names:
            subprocess.run(["userdel", "-r", name], capture_output=True)
            extra = ["-G", ",".join(groups[name])] if groups.get(name) else []
            subprocess.run(["useradd", "-m", "-K", "UID_MIN=1000", *extra, name], check=True)
            made.append(name)
        yield {identity: pwd.getpwnam(name) for identity, name in users.items()}
    finally:
        for name in made:
            kill_processes_of(name)
            subprocess.run(["userdel", "-r", name], capture_output=True)
        for group in made_groups:
            subprocess.run(["groupdel", group], capture_output=True)


class MultiUserEndpoint:
    """A root multi-user endpoint "mu" under a temporary GCE_HOME, started detached.

    MAPPING (identity -> local user, or a list of GCS mapping documents), TEMPLATE, SCHEMA,
    ENVIRONMENT (user_environment.yaml) and EXTRA (config.yaml keys) default to the plain
    setup of USERS; IDENTITIES are the broker users provisioned to submit. ENVIRON is added to
    the manager's own environment (as a site's init system might: secrets, say).
    """

    def __init__(self, broker, idle_timeout: float = 600, *, mapping=None, template: str = TEMPLATE,
                 schema: dict = SCHEMA, environment: str = "SITE_SCRATCH: /scratch\nHOME: /elsewhere\n",
                 extra: dict | None = None, identities=tuple(USERS), environ: dict | None = None) -> None:
        # The users read the template and schema after the drop: the tree must be traversable.
        self.top = Path(tempfile.mkdtemp(prefix="gce-mu-"))
        self.top.chmod(0o711)
        self.home = self.top / "home"
        self.home.mkdir(mode=0o711)
        self.old_home = os.environ.get("GCE_HOME")
        os.environ["GCE_HOME"] = str(self.home)
        self.paths = endpoint_paths("mu")
        self.endpoint_id = str(uuid.uuid4())
        endpoint_url, self.urls = broker.provision(self.endpoint_id, users=list(identities))
        d = self.paths.config_dir
        d.mkdir(parents=True)
        d.chmod(0o711)
        if mapping is None or isinstance(mapping, dict):
            mapping = expression_mapping(USERS if mapping is None else mapping)
        (d / "identity_mapping.json").write_text(json.dumps(mapping))
        (d / "user_config_template.yaml.j2").write_text(template)
        (d / "user_config_schema.json").write_text(json.dumps(schema))
        (d / "user_environment.yaml").write_text(environment)
        for f in ("user_config_template.yaml.j2", "user_config_schema.json"):
            (d / f).chmod(0o644)
        config = {"broker": {"url": endpoint_url}, "multi_user": True, "status_period": 2,
                  "identity_mapping_config_path": "identity_mapping.json", "idle_timeout": idle_timeout,
                  **(extra or {})}
        self.paths.config_file.write_text(yaml.safe_dump(config))
        self.paths.config_file.chmod(0o600)
        self.paths.endpoint_json.write_text(json.dumps({"endpoint_id": self.endpoint_id}))
        self.endpoint_url = endpoint_url
        with test_environ(**(environ or {})):  # the manager inherits this process's environment
            launcher.start_detached(self.paths, timeout=60)
        self.pid = json.loads(self.paths.state_file.read_text())["pid"]

    def executor(self, identity: str, **kw):
        from gce.sdk import Executor

        return Executor(endpoint_id=self.endpoint_id, broker_url=self.urls[identity], **kw)

    def user_endpoints(self) -> list[dict]:
        """The manager's own account of its UEPs (key, pid, state, engine figures)."""
        from gce.daemon import control

        return control.request(self.paths, "status", timeout=5.0)["user_endpoints"]

    def close(self) -> None:
        try:
            launcher.stop(self.paths, timeout=30)
        finally:
            if self.old_home is None:
                os.environ.pop("GCE_HOME", None)
            else:
                os.environ["GCE_HOME"] = self.old_home
            shutil.rmtree(self.top, ignore_errors=True)
