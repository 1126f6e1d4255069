"""The reserved variables a user config template sees beside the user's own values: ``user_runtime``
(the submitter's Python, gce and platform, also by Globus Compute's names) and ``mapped_identity``
(the local account the user endpoint runs as). gce.config.templating renders with them."""

from __future__ import annotations

import copy
import grp
import os
import platform
import pwd
from typing import Any, Mapping

from gce.errors import ConfigError


def local_runtime() -> dict:
    """This machine's ``user_runtime`` (the UEP gets the submitter's from the task instead)."""
    import gce

    return {"python_version": platform.python_version(), "gce_version": gce.__version__,
            "platform": platform.platform()}


def runtime_variables(runtime: Mapping[str, Any]) -> dict:
    """``user_runtime`` as a template sees it: RUNTIME's python_version, gce_version and platform,
    and the names Globus Compute's templates use for them (python.version, python.version_tuple,
    globus_compute_sdk_version), so that a template brought over by gce import renders as it is."""
    variables = copy.deepcopy(dict(runtime))
    version = str(variables.get("python_version") or "")
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    variables.setdefault("python", {"version": version, "version_tuple": parts})
    variables.setdefault("globus_compute_sdk_version", variables.get("gce_version", ""))
    return variables


def mapped_identity_of(user: str | int) -> dict:
    """``mapped_identity`` for local account USER (name or uid), resolved through NSS."""
    try:
        pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"unknown local user {user!r}", "no such account on this machine") from None
    gids = os.getgrouplist(pw.pw_name, pw.pw_gid)
    names = []
    for gid in gids:
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            names.append(str(gid))
    return {"local": {"uname": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid, "groups": names,
                      "gids": gids, "home": pw.pw_dir, "shell": pw.pw_shell}}
