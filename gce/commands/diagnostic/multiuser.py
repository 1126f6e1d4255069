"""Checks of a multi-user endpoint: its identity mapping file and its user config template.

Identity mapping and templating are imported only when a multi-user endpoint is checked,
so the diagnostic of a personal endpoint does not pay for them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gce.commands.diagnostic.checks import Context
from gce.commands.diagnostic.result import Result, fail, ok, skip
from gce.errors import GceError


def _sample_identity(config: Any, identity: str | None) -> str | None:
    if identity:
        return identity
    if config.allowed_identities:
        return config.allowed_identities[0]
    return None


def identity_mapping(ctx: Context, identity: str | None = None) -> Result:
    """Parse the mapping file; map a sample identity (--identity, else the first allowed one)."""
    c = ctx.config
    if c is None:
        return skip("identity mapping", "the config did not load")
    if not c.multi_user:
        return skip("identity mapping", "not a multi-user endpoint")
    if not c.identity_mapping_config_path:
        return fail("identity mapping", "multi_user is on but config.yaml sets no identity_mapping_config_path: "
                    "no submitter can be mapped to a local account",
                    f"add identity_mapping_config_path to {ctx.paths.config_file}")
    from gce.daemon.client import map_identity, mapper_for, mapping_rules

    path = c.identity_mapping_config_path
    try:
        mapper = mapper_for(c)
    except GceError as e:
        return fail("identity mapping", str(e), e.hint or f"fix {path}", file=path)
    rules = mapping_rules(json.loads(Path(path).read_bytes()), c.endpoint_id)
    parsed = f"{path} parses ({rules} rule{'s' * (rules != 1)})"
    sample = _sample_identity(c, identity)
    if sample is None:
        return ok("identity mapping", f"{parsed}; no sample identity to map",
                  file=path, rules=rules)
    try:
        local, rule = map_identity(mapper, sample, c)
    except GceError as e:
        return fail("identity mapping", f"{parsed}, but {sample!r} does not map: {e}",
                    f"gce idmap test {ctx.paths.name} {sample} explains it", file=path, identity=sample)
    return ok("identity mapping", f"{parsed}; {sample!r} maps to {local.name} (uid {local.uid}) by {rule}",
              file=path, identity=sample, local_user=local.name, uid=local.uid, rule=rule)


def template(ctx: Context) -> Result:
    """Render the user config template with the schema's defaults, as for a user who sends no values."""
    c = ctx.config
    if c is None:
        return skip("user template", "the config did not load")
    if not c.multi_user:
        return skip("user template", "not a multi-user endpoint")
    from gce.config import template_vars, templating, user_schema

    tpath = c.user_config_template_path
    try:
        schema = user_schema.load_schema(c.user_config_schema_path)
        required = [k for k in schema.get("required", [])
                    if "default" not in ((schema.get("properties") or {}).get(k) or {})]
        if required:
            return skip("user template", f"the schema requires values without a default ({', '.join(required)}): "
                        "rendering needs a user's values", f"gce render-user-config {ctx.paths.name} "
                        "--user-config FILE.json", file=tpath)
        # Rendered as whoever runs this (the manager renders as the mapped user).
        me = template_vars.mapped_identity_of(os.geteuid())
        rendered = templating.render_here(c, {}, source="(no values: the schema's defaults)", mapped_identity=me)
    except GceError as e:
        return fail("user template", f"{tpath} does not render with the schema's defaults: {e}",
                    e.hint or f"fix {tpath}", file=tpath)
    values = user_schema.apply_defaults(schema, {})
    engine = (rendered.get("engine") or {}).get("type")
    return ok("user template", f"{tpath} renders with the schema's defaults ({len(values)} value"
              f"{'s' * (len(values) != 1)}): engine {engine}", file=tpath, values=values,
              rendered_as=me["local"]["uname"])
