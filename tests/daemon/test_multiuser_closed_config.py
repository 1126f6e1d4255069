"""A multi-user endpoint whose config lives under a directory its users cannot enter, as the
packages' /etc/gce (0750 root:root): the manager hands the UEP a descriptor of the template's
directory and one of the schema, the UEP renders through them as the mapped user, and closes them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.daemon.multiuser import MultiUserEndpoint, local_accounts, processes_of
from tests.endpoint import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

NAMES = ("gcetest-mu-etc-a",)
USERS = {"alice@uni.edu": NAMES[0]}
TEMPLATE = """engine:
  type: ThreadPoolEngine
{% include "workers.yaml.j2" %}
"""
SIBLING = "  max_workers: {{ workers }}\n"
SCHEMA = {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 1, "maximum": 4}},
          "required": ["workers"], "additionalProperties": False}


def open_descriptors() -> dict:
    """What a task in a ThreadPoolEngine sees: every descriptor of its UEP and where it leads."""
    import os

    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return found


@pytest.fixture
def closed():
    """A 0750 root:root directory holding the template (with its sibling) and the schema in
    another directory, each 0711 inside it as `gce configure` makes an endpoint's."""
    top = Path(tempfile.mkdtemp(prefix="gce-etc-"))
    top.chmod(0o750)
    tpl, sch = top / "hpc", top / "schemas"
    for d in (tpl, sch):
        d.mkdir(mode=0o711)
    (tpl / "template.yaml.j2").write_text(TEMPLATE)
    (tpl / "workers.yaml.j2").write_text(SIBLING)
    (sch / "schema.json").write_text(json.dumps(SCHEMA))
    for f in (tpl / "template.yaml.j2", tpl / "workers.yaml.j2", sch / "schema.json"):
        f.chmod(0o644)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def test_task_runs_with_config_under_a_closed_directory(broker, closed):
    with local_accounts(NAMES, USERS):
        ep = MultiUserEndpoint(broker, mapping=USERS, identities=tuple(USERS), extra={
            "user_config_template_path": str(closed / "hpc" / "template.yaml.j2"),
            "user_config_schema_path": str(closed / "schemas" / "schema.json")})
        try:
            ep.top.chmod(0o750)  # GCE_HOME under a directory the users cannot enter, too
            with ep.executor("alice@uni.edu", user_endpoint_config={"workers": 3}) as ex:
                fds = ex.submit(open_descriptors).result(timeout=60)
                assert ex.submit(os.getuid).result(timeout=60) != 0
        finally:
            ep.close()
            wait_until(lambda: not processes_of(NAMES), timeout=20)
    # Rendered through the descriptors, then closed: no task can list or read through them.
    assert not [t for t in fds.values() if t.startswith(str(closed))], fds
