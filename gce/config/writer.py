"""Writing a new endpoint's config.yaml and endpoint.json (what `gce configure` does).

``render`` is pure: values in, commented YAML text out (from the packaged template
``gce/templates/config.yaml.j2``, or ``multi_user/config.yaml.j2`` for a templated endpoint,
rendered with a plain Jinja2 environment: the template is ours, the values are quoted by the
``yaml_str`` filter). ``write`` checks that the text parses back to the same values and passes
the schema, then creates the files exclusively, so an existing endpoint is never overwritten.

A templated endpoint (``multi_user``) also gets copies of the packaged
``gce/templates/multi_user/`` files: the user config template and its schema, the user
environment and, when root configures it (``identity_mapping``), an identity mapping example.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gce.config.model import parse_yaml, validate
from gce.config.schema import PLACEHOLDER_BROKER_URL, PROVIDER
from gce.config.paths import EndpointPaths
from gce.errors import EX_CANTCREAT, ConfigError, GceError, PermissionDenied, UsageError
from gce.transport.urls import has_password, problem, redact

DEFAULT_BROKER_URL = PLACEHOLDER_BROKER_URL
BROKER_URL_ENV = "GCE_ENDPOINT_BROKER_URL"
ENGINES = {"htex": "HighThroughputEngine", "process": "ProcessPoolEngine", "thread": "ThreadPoolEngine",
           "mpi": "MPIEngine"}
PROVIDERS = {"local": "LocalProvider", "slurm": "SlurmProvider"}  # where htex's and mpi's blocks run
BLOCK_ENGINES = ("htex", "mpi")  # the engines whose workers run in blocks, which a provider starts
DEFAULT_WALLTIME = "01:00:00"
WALLTIME = re.compile(PROVIDER["properties"]["walltime"]["pattern"])
SLURM_NAME = re.compile(r"^[^\s,]{1,64}$")  # one partition or account: sbatch splits on commas
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700
# A root endpoint's user endpoints render the template as the mapped user (DESIGN.md, security
# invariant 4): they must reach the files of its directory, without listing it.
SHARED_DIR_MODE = 0o711

MULTI_USER_TEMPLATES = "multi_user"
TEMPLATE_FILE = "user_config_template.yaml.j2"
SCHEMA_FILE = "user_config_schema.json"
ENVIRONMENT_FILE = "user_environment.yaml"
IDENTITY_MAPPING_FILE = "identity_mapping.json"

# Characters that may stand unescaped in a double-quoted YAML scalar: YAML 1.1's printable set
# (section 5.1) minus its line breaks NEL, LS and PS (a raw one folds to a space) and the BOM.
_NOT_YAML_PLAIN = re.compile("[^\x09\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class NewEndpoint:
    """What a new endpoint's files are made of."""

    name: str
    broker_url: str
    engine: str = "process"  # a key of ENGINES
    max_workers: int = 1
    provider: str = "local"  # a key of PROVIDERS; only htex has one
    partition: str = ""  # Slurm only; empty: the cluster's default partition
    account: str = ""  # Slurm only; empty: the user's default account
    walltime: str = DEFAULT_WALLTIME  # Slurm only
    display_name: str = ""
    default_url: bool = False  # the URL is our placeholder: the user must complete it
    multi_user: bool = False  # templated: each user endpoint's engine comes from a template
    identity_mapping: bool = False  # multi_user run by root: submitters are mapped to local accounts
    endpoint_id: str = field(default_factory=_new_id)
    created_at: str = field(default_factory=_now)


@dataclass(frozen=True)
class Written:
    config_file: Path
    endpoint_json: Path
    config_mode: int
    files: tuple[Path, ...] = ()  # the other files of a templated endpoint, in the order written


def yaml_str(value: str) -> str:
    """VALUE as a double-quoted YAML scalar: nothing in it can end the string or add keys."""
    quoted = json.dumps(value, ensure_ascii=False)  # JSON's escapes are valid in YAML double quotes
    return _NOT_YAML_PLAIN.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def will_hold_secret(ep: NewEndpoint) -> bool:
    """True when config.yaml holds a password, or will once the user completes the placeholder URL."""
    return ep.default_url or has_password(ep.broker_url)


def check_broker_url(url: str) -> str:
    """URL if it looks like an AMQP URL, else a UsageError that does not reveal the password."""
    why: str | None = "it must start with amqp:// or amqps:// and contain no spaces"
    if re.match(r"^amqps?://[^\s]+$", url):
        why = problem(url)  # pika could not connect with it either
    if why:
        raise UsageError(f"invalid broker URL {redact(url)!r}", why,
                         hint="the URL looks like amqps://USER:PASSWORD@HOST:5671/VHOST")
    return url


def default_engine(provider: str | None) -> str:
    """The engine `gce configure` writes when none is named: a process pool when the workers run on
    this machine (a task crosses two processes fewer than through HTEX's interchange and its worker
    pool's manager, and a cancelled task's processes are killed); HTEX when a provider is named,
    whose blocks of workers it starts (a batch job each, with slurm)."""
    return "htex" if provider else "process"


def check_values(ep: NewEndpoint) -> None:
    """Raise a UsageError naming the first value of EP that cannot go into a config."""
    check_broker_url(ep.broker_url)
    if ep.engine not in ENGINES:
        raise UsageError(f"unknown engine {ep.engine!r}", f"choose one of {', '.join(ENGINES)}")
    if len(ep.display_name) > 256:
        raise UsageError("invalid display name", f"it has {len(ep.display_name)} characters; at most 256 fit")
    if ep.max_workers < 1:
        raise UsageError("invalid number of workers", f"{ep.max_workers} is less than 1")
    check_provider(ep)
    if ep.identity_mapping and not ep.multi_user:
        raise UsageError("invalid endpoint", "only a multi-user endpoint maps identities")


def check_provider(ep: NewEndpoint) -> None:
    """Raise a UsageError naming the first provider setting of EP that cannot be written."""
    if ep.provider not in PROVIDERS:
        raise UsageError(f"unknown provider {ep.provider!r}", f"choose one of {', '.join(PROVIDERS)}")
    if ep.provider != "local" and ep.engine not in BLOCK_ENGINES:
        raise UsageError(f"--provider {ep.provider} needs --engine htex or mpi",
                         f"the {ep.engine} engine runs on this machine only")
    slurm = {"--partition": ep.partition, "--account": ep.account}
    if ep.provider != "slurm" and (any(slurm.values()) or ep.walltime != DEFAULT_WALLTIME):
        raise UsageError("Slurm settings without Slurm", "--partition, --account and --walltime need --provider slurm")
    for option, value in slurm.items():
        if value and not SLURM_NAME.match(value):
            raise UsageError(f"invalid {option} {value!r}", "it is one name of at most 64 characters, without spaces or commas")
    if not WALLTIME.match(ep.walltime):
        raise UsageError(f"invalid --walltime {ep.walltime!r}", "it reads MINUTES, MINUTES:SECONDS or HOURS:MINUTES:SECONDS (sbatch --time)")


def default_broker_url() -> tuple[str, bool]:
    """The broker URL to use when none was given, and whether it is our placeholder."""
    env = os.environ.get(BROKER_URL_ENV, "").strip()
    return (env, False) if env else (DEFAULT_BROKER_URL, True)


def render(ep: NewEndpoint, config_file: Path) -> str:
    """The commented config.yaml text for EP (pure)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gce", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["yaml_str"] = yaml_str
    template = f"{MULTI_USER_TEMPLATES}/config.yaml.j2" if ep.multi_user else "config.yaml.j2"
    return env.get_template(template).render(
        name=ep.name,
        created_at=ep.created_at,
        display_name=ep.display_name or ep.name,
        broker_url=ep.broker_url,
        default_url=ep.default_url,
        has_secret=will_hold_secret(ep),
        engine=ep.engine,
        max_workers=int(ep.max_workers),
        provider=ep.provider, partition=ep.partition, account=ep.account, walltime=ep.walltime,
        config_file=str(config_file),
        identity_mapping=ep.identity_mapping,
        template_file=TEMPLATE_FILE,
        schema_file=SCHEMA_FILE,
        environment_file=ENVIRONMENT_FILE,
        identity_mapping_file=IDENTITY_MAPPING_FILE,
    )


def packaged_files(ep: NewEndpoint) -> list[tuple[str, bytes]]:
    """The packaged files a templated endpoint's directory gets next to config.yaml (name, content)."""
    if not ep.multi_user:
        return []
    from importlib import resources

    names = [TEMPLATE_FILE, SCHEMA_FILE, ENVIRONMENT_FILE] + ([IDENTITY_MAPPING_FILE] if ep.identity_mapping else [])
    folder = resources.files("gce").joinpath("templates", MULTI_USER_TEMPLATES)
    return [(name, folder.joinpath(name).read_bytes()) for name in names]


def endpoint_record(ep: NewEndpoint) -> dict[str, Any]:
    return {"endpoint_id": ep.endpoint_id, "name": ep.name, "created_at": ep.created_at}


def check_rendered(text: str, ep: NewEndpoint, source: str) -> dict:
    """Parse TEXT back and validate it: what is written is what `gce start` will load."""
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"invalid configuration for {source}", "the rendered file is not a YAML mapping")
    validate(data, source)
    if data["broker"]["url"] != ep.broker_url or data.get("display_name") != (ep.display_name or ep.name):
        raise ConfigError(f"cannot write {source}", "a value did not survive YAML quoting unchanged")
    expected = (ep.multi_user, IDENTITY_MAPPING_FILE if ep.identity_mapping else None)
    if (bool(data.get("multi_user")), data.get("identity_mapping_config_path")) != expected:
        raise ConfigError(f"cannot write {source}", "the rendered file does not say what kind of endpoint it is")
    return data


def refuse_existing(paths: EndpointPaths, name: str, others: list[Path] | None = None) -> None:
    """Raise if endpoint NAME (its config, its id or one of OTHERS) exists already."""
    for existing in (paths.config_file, paths.endpoint_json, *(others or ())):
        if existing.exists():
            raise GceError(f"endpoint {name!r} already exists", f"{existing} is there",
                           hint=f"gce delete {name} first, or choose another name", exit_code=EX_CANTCREAT)


def write(paths: EndpointPaths, ep: NewEndpoint) -> Written:
    """Create the endpoint's directories and files; refuse if the endpoint exists already."""
    extra = [(paths.config_dir / name, data) for name, data in packaged_files(ep)]
    refuse_existing(paths, ep.name, [path for path, _ in extra])
    check_values(ep)
    text = render(ep, paths.config_file)
    check_rendered(text, ep, str(paths.config_file))
    mode = SECRET_MODE if will_hold_secret(ep) else PUBLIC_MODE
    created: list[Path] = []
    try:
        for d in (paths.state_dir, paths.config_dir):  # the config dir last: it may be the same one
            d_mode = SHARED_DIR_MODE if ep.identity_mapping and d == paths.config_dir else DIR_MODE
            d.mkdir(parents=True, exist_ok=True, mode=d_mode)
            os.chmod(d, d_mode)  # mkdir's mode is filtered by the umask
        try:
            _create(paths.endpoint_json, (json.dumps(endpoint_record(ep), indent=2) + "\n").encode(), PUBLIC_MODE, ep)
            created.append(paths.endpoint_json)
            for path, data in extra:
                _create(path, data, PUBLIC_MODE, ep)
                created.append(path)
            # config.yaml last: `gce list` shows an endpoint once its config exists.
            _create(paths.config_file, text.encode(), mode, ep)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise
    except PermissionError as e:
        raise PermissionDenied(
            f"cannot create endpoint {ep.name!r}", f"permission denied: {e.filename}",
            hint="run gce as a user who can write there, or set GCE_HOME to a directory you own",
        ) from None
    except OSError as e:
        raise GceError(f"cannot create endpoint {ep.name!r}", f"{e.filename}: {e.strerror}", exit_code=EX_CANTCREAT) from None
    return Written(paths.config_file, paths.endpoint_json, mode, tuple(path for path, _ in extra))


def _create(path: Path, data: bytes, mode: int, ep: NewEndpoint) -> None:
    """Write PATH whole with MODE, or not at all; never replace an existing file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600 from the start
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic and exclusive: fails if PATH appeared meanwhile
        except FileExistsError:
            raise GceError(
                f"endpoint {ep.name!r} already exists", f"{path} appeared while it was being configured",
                exit_code=EX_CANTCREAT,
            ) from None
    finally:
        os.unlink(tmp)
