"""Whether a mapped identity may run here: allowed identities or domains, and no privileged
account unless the admin allows it (DESIGN.md, security invariant 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from gce.daemon.idmap import IdentityMapper, MappingRefused
from gce.daemon.privileges import LocalUser, UnknownLocalUser, resolve_local_user

if TYPE_CHECKING:
    from gce.config.model import EndpointConfig


def check_allowed(identity: str, *, allowed_identities: Iterable[str] | None, allowed_domains: Iterable[str] | None,
                  endpoint: str) -> None:
    """MappingRefused unless IDENTITY is listed, or in a listed domain (DNS names: any case);
    with neither list configured everyone is allowed."""
    if allowed_identities is None and allowed_domains is None:
        return
    listed = tuple(allowed_domains) if allowed_domains is not None else None
    if identity in (allowed_identities or ()) or (
            "@" in identity and identity.rpartition("@")[2].lower() in {d.lower() for d in listed or ()}):
        return
    rule = "/".join(k for k, v in (("allowed_identities", allowed_identities), ("allowed_domains", listed))
                    if v is not None)
    # The domains are shown to the submitter; the allowed names are not (they are other people's).
    why = "; ".join(([] if allowed_identities is None else ["not in allowed_identities"])
                    + ([] if listed is None else [f"allowed_domains: {', '.join(listed) or 'none'}"]))
    raise MappingRefused(identity, rule, f"identity {identity!r} is not allowed on endpoint {endpoint!r} ({why})",
                         endpoint=endpoint, hint=f"add it to {rule.replace('/', ' or ')} in config.yaml", policy=True)


def check_policy(identity: str, local: LocalUser, *, allowed_identities: Iterable[str] | None = None,
                 allowed_domains: Iterable[str] | None = None, min_uid: int = 1000,
                 allow_privileged_mapping: bool = False, endpoint: str = "") -> None:
    """MappingRefused if IDENTITY may not run as LOCAL here (DESIGN.md, security invariant 3)."""
    check_allowed(identity, allowed_identities=allowed_identities, allowed_domains=allowed_domains, endpoint=endpoint)
    if allow_privileged_mapping or (local.uid != 0 and local.uid >= min_uid):
        return
    rule = "uid 0" if local.uid == 0 else f"min_uid {min_uid}"
    why = "mapping to root is refused" if local.uid == 0 else f"uids below min_uid {min_uid} are refused"
    raise MappingRefused(identity, rule, f"identity {identity!r} maps to {local.name!r} (uid {local.uid}) on endpoint "
                         f"{endpoint!r}: {why}", endpoint=endpoint,
                         hint="map it to an unprivileged account (allow_privileged_mapping: true lifts this check)",
                         policy=True)


def map_identity(mapper: IdentityMapper, identity: str, config: EndpointConfig) -> tuple[LocalUser, str]:
    """The local account IDENTITY runs as on CONFIG's endpoint and the rule that chose it;
    MappingRefused when it gets none or the policy refuses it."""
    # first: never run a mapping program for someone refused anyway
    check_allowed(identity, allowed_identities=config.allowed_identities, allowed_domains=config.allowed_domains,
                  endpoint=config.name)
    name, rule = mapper.map(identity)
    try:
        local = resolve_local_user(name)
    except UnknownLocalUser as e:
        raise MappingRefused(identity, "local user exists", f"identity {identity!r} maps to {name!r} on endpoint "
                             f"{config.name!r}, which is not a local user ({rule})", endpoint=config.name,
                             hint=f"create the account or fix {rule} in {mapper.path}", detail=e.why) from None
    check_policy(identity, local, allowed_identities=config.allowed_identities, allowed_domains=config.allowed_domains,
                 min_uid=config.min_uid, allow_privileged_mapping=config.allow_privileged_mapping, endpoint=config.name)
    return local, rule
