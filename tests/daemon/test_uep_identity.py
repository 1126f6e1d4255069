"""A user endpoint proves its own identity before anything else, for real: started with credentials
other than the ones its conf expects (as root, without a group or with root's, in its manager's
session, with a loose umask, or able to become root again) it refuses to run and tells its manager why in a FATAL frame.

Each case runs ``python -m gce.uep`` the way gce/daemon/spawn.py does, with a valid conf, so a
UEP that skipped its check would come up and say READY instead (the first case shows it does).
"""

from __future__ import annotations

import grp
import os
import uuid

import pytest

from gce.transport import frames
from tests.daemon.multiuser import local_accounts
from tests.uep.uep_process import first_frame as uep_first_frame

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create users and drop privileges")

USER, GROUP = "gcetest-id-a", "gcetest-id-lab"


@pytest.fixture(scope="module")
def user():
    with local_accounts((USER,), users={"u": USER}, groups={USER: [GROUP]}) as accounts:
        yield accounts["u"]


def first_frame(identity: dict, prefix: tuple = (), **popen) -> tuple[bytes, dict, int, str]:
    """(kind, header) of the first frame a UEP sends with IDENTITY expected, its exit status and stderr."""
    conf = {"endpoint_id": str(uuid.uuid4()), "engine": {"type": "ThreadPoolEngine", "max_workers": 1},
            "run_dir": "/nonexistent", "max_result_bytes": 1 << 20, "allowed_functions": None,
            "debug": False, "identity": identity}
    return uep_first_frame(conf, prefix, **popen)


def _identity(user) -> dict:
    return {"uid": user.pw_uid, "gid": user.pw_gid, "groups": sorted(os.getgrouplist(user.pw_name, user.pw_gid))}


def _as(user, groups=None) -> dict:
    return {"user": user.pw_uid, "group": user.pw_gid,
            "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid) if groups is None else groups}


def test_with_the_expected_identity_it_comes_up(user):
    kind, header, rc, _ = first_frame(_identity(user), **_as(user))
    assert kind == frames.READY and header["engine"] == "ThreadPoolEngine"
    assert rc == 0


def _refusal(account, **how) -> str:
    kind, header, rc, stderr = first_frame(_identity(account), **how)
    assert kind == frames.FATAL and header["code"] == "ENDPOINT_FAILED"
    assert rc == 1 and f"gce-uep: {header['reason']}" in stderr
    return header["reason"]


def test_it_refuses_to_run_as_root(user):
    reason = _refusal(user)  # no drop at all: this process is root
    assert reason == (f"the user endpoint runs with uid (0, 0) instead of ({user.pw_uid}, {user.pw_uid}): "
                      "refusing to run")


def test_it_refuses_to_run_without_a_supplementary_group(user):
    lab = grp.getgrnam(GROUP).gr_gid
    assert lab in _identity(user)["groups"]
    reason = _refusal(user, **_as(user, groups=[user.pw_gid]))
    assert reason == (f"the user endpoint runs with groups [{user.pw_gid}] instead of "
                      f"{_identity(user)['groups']}: refusing to run")


def test_it_refuses_to_run_with_roots_group(user):
    groups = _identity(user)["groups"]
    reason = _refusal(user, **_as(user, groups=[0, *groups]))
    assert reason == f"the user endpoint runs with groups {[0, *groups]} instead of {groups}: refusing to run"


def test_it_refuses_to_run_with_another_primary_group(user):
    reason = _refusal(user, **{**_as(user), "group": 0})
    assert reason == (f"the user endpoint runs with gid (0, 0) instead of ({user.pw_gid}, {user.pw_gid}): "
                      "refusing to run")


def test_it_refuses_to_run_in_its_managers_session(user):
    reason = _refusal(user, **_as(user), start_new_session=False)
    assert reason == f"the user endpoint runs in session {os.getsid(0)} instead of its own: refusing to run"


def test_it_refuses_to_run_with_a_loose_umask(user):
    reason = _refusal(user, **_as(user), umask=0o022)
    assert reason == "the user endpoint started with umask 0022 instead of 0077: refusing to run"


def test_it_refuses_to_run_when_it_could_become_root_again(user):
    # The user's uid, gid and groups, but CAP_SETUID kept as an ambient capability: setuid(0) works.
    setpriv = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
               "--inh-caps=+setuid", "--ambient-caps=+setuid", "--")
    reason = _refusal(user, prefix=setpriv)
    assert reason == "the user endpoint could become root again after dropping its privileges: refusing to run"
