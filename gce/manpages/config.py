"""gce-config(5): config.yaml from the schema the validator uses, and the multi-user files.

Each key's type and allowed values come from gce.config.schema.CONFIG, its default from
gce.config.model.from_data (what the endpoint really gets when the key is left out); only what a
key is for is written here, in KEYS (a test checks that every key of the schema has its line).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Iterator

from gce.manpages import bold, escape, header, italic, page, section, tagged, verbatim

KEYS = {
    "display_name": "A name for people (gce list, gce status).",
    "broker": "How the endpoint reaches its RabbitMQ broker.",
    "broker.url": "The endpoint's broker URL, amqps://USER:PASSWORD@HOST:5671/VHOST (keep config.yaml mode 0600).",
    "broker.queue_type": "The type of the endpoint's task queue; quorum survives the loss of a broker node.",
    "broker.prefetch": "Tasks the broker may hand the endpoint before it acknowledges them.",
    "broker.heartbeat": "Seconds between AMQP heartbeats (0: none).",
    "broker.management_url": "The broker's management API (http(s)://HOST:15672/), which gce diagnostic "
                             "reads the broker's clock from.",
    "engine": "What runs the functions (a multi-user endpoint's comes from its template instead).",
    "engine.type": "HighThroughputEngine: parsl workers in blocks; ProcessPoolEngine, ThreadPoolEngine: a local pool.",
    "engine.mpi_launcher": "MPIEngine (or GlobusMPIEngine: parsl's MPIExecutor): what starts each task's ranks on "
                           "its nodes, mpiexec, srun or aprun, as $PARSL_MPI_PREFIX (an MPIFunction's prefix).",
    "engine.max_workers_per_block": "MPI tasks a block of an MPIEngine runs at once.",
    "engine.max_workers_per_node": "Worker processes per node (HighThroughputEngine).",
    "engine.max_workers": "Workers of a process or thread pool.",
    "engine.cores_per_worker": "Cores each worker takes (parsl's cores_per_worker).",
    "engine.strategy_period": "Seconds between two looks at the load to add or remove blocks.",
    "engine.max_idletime": "Seconds a block may stay idle before it is removed.",
    "engine.heartbeat_period": "Seconds between heartbeats of parsl's workers.",
    "engine.heartbeat_threshold": "Seconds without a heartbeat after which a worker is taken as lost.",
    "engine.address": "The address workers connect back to (a batch node must reach it).",
    "engine.worker_debug": "Workers log at debug level.",
    "engine.provider": "Where blocks run (HighThroughputEngine only); absent: on this machine (LocalProvider).",
    "engine.provider.type": "LocalProvider runs blocks on this machine; the others submit them as batch jobs.",
    "engine.provider.init_blocks": "Blocks started at once.",
    "engine.provider.min_blocks": "Blocks kept even when idle.",
    "engine.provider.max_blocks": "Blocks at most.",
    "engine.provider.nodes_per_block": "Nodes of each block (batch job).",
    "engine.provider.worker_init": "Shell commands run before the workers start (module load, a venv).",
    "engine.provider.walltime": "Each batch job's time limit, HH:MM:SS; a task with a time limit goes only "
                                "to a block that outlives it.",
    "engine.provider.partition": "The batch partition (or queue).",
    "engine.provider.account": "The account batch jobs are charged to.",
    "engine.provider.qos": "The batch quality of service.",
    "engine.provider.scheduler_options": "Lines added to the batch script's header (#SBATCH ...).",
    "engine.provider.launcher": "How workers are started on a block's nodes.",
    "engine.provider.launcher.type": "The launcher's parsl class.",
    "engine.block_failure_limit": "Blocks failing one after the other before the endpoint stops submitting "
                                  "blocks and answers BLOCKS_FAILING (gce resume submits again).",
    "engine.block_grace_period": "Seconds a block may run before a worker connects, before it counts as failed.",
    "engine.scheduler_timeout": "Seconds a scheduler command (sbatch, squeue, scancel) may take.",
    "engine.scheduler_poll_period": "Seconds between polls of the scheduler.",
    "engine.container_type": "Run each block's worker pool in a container, as Globus Compute does: docker, podman "
                             "and podman-hpc run CONTAINER_URI with the run directory mounted, apptainer and "
                             "singularity run it, custom runs CONTAINER_CMD_OPTIONS; HighThroughputEngine only.",
    "engine.container_uri": "The image the worker pools run in.",
    "engine.max_retries_on_system_failure": "How many more times a task whose worker died (killed by a signal, "
                                            "out of memory) is run before it fails WORKER_LOST, unless the task "
                                            "(the Executor) says; never for an exception of the function.",
    "engine.container_cmd_options": "Options of the container's run command (e.g. --network host, mounts of the "
                                    "worker's venv); for custom, the whole command, with {EXECUTOR_LAUNCH_CMD} "
                                    "and {EXECUTOR_RUNDIR} filled in.",
    "engine.run_in_sandbox": "Run each task in a directory of its own, WORKING_DIR/TASK_ID, made 0700 "
                             "(GCE_TASK_SANDBOX_DIR names it); not on a ThreadPoolEngine.",
    "engine.working_dir": "Where tasks run (default tasks_working_dir, relative to the user endpoint's "
                          "directory); not on a ThreadPoolEngine.",
    "limits": "Sizes and retries.",
    "limits.max_payload_bytes": "The largest task accepted, in bytes.",
    "limits.max_result_bytes": "The largest result sent back, in bytes.",
    "limits.task_attempts": "How often a task is run when its worker dies under it.",
    "limits.max_output_bytes": "Bytes of a task's stdout, and of its stderr, sent back with its result (0: none).",
    "multi_user": "A templated endpoint: each user's tasks run in a user endpoint rendered from the template "
                  "(as root: as the local account the submitter is mapped to).",
    "identity_mapping_config_path": "The identity mapping file (see IDENTITY MAPPING); relative to config.yaml.",
    "identity_mapping_timeout": "Seconds an external mapping program may take.",
    "user_config_template_path": "The user endpoints' template (see USER ENDPOINTS).",
    "user_config_schema_path": "The JSON schema of the values users may send.",
    "user_environment_path": "The user endpoints' environment variables.",
    "allowed_identities": "Broker user names allowed to submit; absent: anyone mapped.",
    "allowed_domains": "Or: anyone whose broker user name ends in @DOMAIN.",
    "min_uid": "Local accounts below this uid (and root) are refused ...",
    "allow_privileged_mapping": "... unless this is true.",
    "idle_timeout": "Seconds before an idle user endpoint stops (0: never).",
    "allowed_functions": "The SHA-256 of each function allowed to run; absent or null: any. A multi-user "
                         "endpoint's user config template may narrow it per user, never widen it.",
    "allowed_serializers": "The kinds of function a task may carry: cloudpickle (a pickled function), source "
                           "(register_source_code); absent or null: any. Refused before anything is unpickled "
                           "(SERIALIZER_NOT_ALLOWED); a user config template may narrow it per user.",
    "status_period": "Seconds between two status messages to the broker.",
    "debug": "Log at debug level.",
    "endpoint_setup": "A shell command the user endpoint runs as its user before its engine starts (also from "
                      "a user config template); its output goes to the user endpoint's log, and when it fails "
                      "the user endpoint does not start and the waiting tasks are told why. It sees "
                      "GCE_USER_PYTHON_VERSION and GCE_USER_SDK_VERSION, the submitter's, on a templated endpoint.",
    "endpoint_teardown": "A shell command the user endpoint runs as its user after its engine stopped; keep it "
                         "short: it runs within the user endpoint's stop.",
    "endpoint_setup_timeout": "Seconds endpoint_setup, or endpoint_teardown, may take before it is killed "
                              "(default 120).",
}


def schema_keys(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, its schema) of every key SCHEMA describes, parents before children."""
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, sub
        yield from schema_keys(sub, f"{key}.")


def kind(schema: dict[str, Any]) -> str:
    """What a value must be, in words, from its schema."""
    from gce.config.schema import allowed

    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    types = schema.get("type", "")
    words = {"object": "a mapping", "string": "a string", "integer": "an integer", "number": "a number",
             "boolean": "true or false", "array": "a list", "null": "null"}
    said = " or ".join(words[t] for t in ([types] if isinstance(types, str) else types))
    bounds = allowed(schema)
    if bounds:
        return bounds
    if "minimum" in schema:
        said += f", at least {schema['minimum']}"
    if "exclusiveMinimum" in schema:
        said += f", above {schema['exclusiveMinimum']}"
    if "maxLength" in schema:
        said += f", at most {schema['maxLength']} characters"
    if "pattern" in schema:
        said += f", matching {schema['pattern']}"
    if "array" in ([types] if isinstance(types, str) else types) and "items" in schema:
        said += " whose items are each " + kind(schema["items"])
    return said


def defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    """The values a personal and a multi-user endpoint get for every key left out."""
    from gce.config.model import from_data

    broker = {"url": "amqp://USER@HOST/VHOST"}
    personal = asdict(from_data("NAME", "ID", {"broker": broker, "engine": {"type": "ThreadPoolEngine"}}))
    templated = asdict(from_data("NAME", "ID", {"broker": broker, "multi_user": True}))
    return personal, templated


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    return json.dumps(value) if isinstance(value, (bool, list)) else str(value)


def gce_engine_defaults() -> dict[str, Any]:
    """The engine keys gce itself takes out before the rest goes to parsl, with their defaults:
    each key is given to gce.uep.breaker.take_options alone, to see which of its values it sets."""
    from gce.config.schema import ENGINE
    from gce.uep.breaker import take_options

    base = take_options({})
    found: dict[str, Any] = {}
    for key in ENGINE["properties"]:
        probe = take_options({key: 7})
        changed = [name for name in probe if probe[name] != base[name]]
        if changed:
            found[key] = base[changed[0]] or None  # 0: not set, parsl's own polling
    return found


def default_of(key: str, personal: dict[str, Any], templated: dict[str, Any], schema: dict[str, Any]) -> str | None:
    leaf = key.rsplit(".", 1)[-1]
    if schema.get("type") == "object" or "enum" in schema and leaf == "type":
        return None
    if leaf.startswith("container_"):  # gce.uep.containers: no container unless set
        return None
    if leaf == "max_retries_on_system_failure":  # gce.uep.retries
        return "0"
    if key.startswith("engine."):
        own = {**gce_engine_defaults(), "run_in_sandbox": False, "working_dir": "tasks_working_dir"}  # gce.uep.sandbox
        return _shown(own[leaf]) if own.get(leaf) is not None else "parsl's"
    if leaf not in personal or key in ("broker.url", "engine"):
        return None
    mine, theirs = _shown(personal[leaf]), _shown(templated[leaf])
    return mine if mine == theirs else f"{mine}; multi-user: {theirs}"


def key_items() -> list[str]:
    from gce.config.schema import CONFIG

    personal, templated = defaults()
    lines: list[str] = []
    for key, schema in schema_keys(CONFIG):
        said = [kind(schema)]
        default = default_of(key, personal, templated, schema)
        if key in CONFIG.get("required", []) or (key == "engine"):
            said.append("required" if key != "engine" else "required unless multi_user is true")
        elif default is not None:
            said.append(f"default: {default}")
        lines += tagged(bold(key), [escape(f"{KEYS[key]} ({'; '.join(said)})")])
    return lines


def template_variables() -> list[str]:
    """The variables and filters a user config template may use, from the code that renders it."""
    import jinja2

    from gce.config.template_vars import local_runtime, mapped_identity_of
    from gce.config.templating import environment
    from gce.config.user_schema import JINJA_GLOBALS, RESERVED

    filters = sorted(set(environment(".").filters) - set(jinja2.Environment().filters))
    identity = mapped_identity_of(0)["local"]  # root's: only the names of the keys are shown
    said = {
        "mapped_identity": "The local account the submitter is mapped to: "
                           + ", ".join(f"mapped_identity.local.{k}" for k in identity) + ".",
        "user_runtime": "The submitter's side, sent with the task: "
                        + ", ".join(f"user_runtime.{k}" for k in local_runtime()) + ".",
        "parent_config": "This endpoint's config.yaml as a mapping, without broker.url (it holds the password).",
    }
    lines: list[str] = []
    for name in sorted(RESERVED):
        lines += tagged(bold(name), [escape(said[name])])
    lines += [".PP", escape("Every value of the user's user_endpoint_config (after the schema's defaults are filled "
                            "in) is a variable of its own name; a value may not be named "
                            + ", ".join(sorted(RESERVED | JINJA_GLOBALS)) + ". Filters besides Jinja2's: "
                            + ", ".join(filters) + " (quotes a value for the shell).")]
    return lines


def _example(name: str) -> list[str]:
    from importlib import resources

    text = resources.files("gce").joinpath("templates", "multi_user", name).read_text()
    return [".PP", *verbatim(text.rstrip("\n").splitlines())]


def config_page() -> str:
    lines = header("gce-config", 5, "the configuration files of a gce endpoint")
    lines += [
        section("SYNOPSIS"), italic("/etc/gce/NAME/config.yaml"), ".br", italic("~/.gce/NAME/config.yaml"),
        section("DESCRIPTION"),
        escape("gce configure NAME writes an endpoint's config.yaml, commented. It is YAML; gce start, gce restart "
               "and gce diagnostic check it against the schema below and name the key that is wrong. Keys are "
               "written here as paths: engine.provider.type is the key type in the mapping provider in the mapping "
               "engine. Relative file names are relative to config.yaml's directory."),
        section("KEYS"), *key_items(),
        section("USER ENDPOINTS"),
        escape("A multi-user endpoint (multi_user: true, made by gce configure NAME --multi-user) starts one user "
               "endpoint per user and per set of values the user sends with a task (the SDK's "
               "user_endpoint_config). The values are checked against user_config_schema.json, a JSON schema "
               "(draft 2020-12) whose defaults fill in what was left out. They then fill in "
               "user_config_template.yaml.j2, a Jinja2 template rendered as the mapped user in Jinja2's sandbox: "
               "every {{ expression }} becomes one quoted YAML value, so a user's text cannot add keys; the "
               "result must be a mapping with an engine section (the keys of engine above). A template may "
               "include or extend only files of its own directory. Check a change offline with gce "
               "render-user-config NAME --user-config FILE.json."),
        ".SS \"Template variables\"", *template_variables(),
        ".SS user_environment.yaml",
        escape("Environment variables of every user endpoint, one NAME: value per line (a user endpoint does "
               "not inherit the manager's environment). A file that someone other than root could change is "
               "ignored whole. Example, as gce configure writes it:"), *_example("user_environment.yaml"),
        section("IDENTITY MAPPING"),
        escape("identity_mapping_config_path names a JSON file in Globus Connect Server v5's format: one document "
               "or a list of them, tried in order; the first that maps the submitter (the broker user name a task "
               "carries, seen as {username}, {id} and, when it holds an @, {email}) wins. The file must be "
               "writable by root only, and is read again when it changes."),
        *tagged(bold("expression_identity_mapping#1.0.0"),
                [escape("\"mappings\": a list of {\"source\", \"match\", \"output\", \"ignore_case\", \"literal\"}. "
                        "match must cover the whole source; {0} in output is its first parenthesised group. In match "
                        "only . ? * | ( ) are operators and \\ escapes one of them.")]),
        *tagged(bold("external_identity_mapping#1.0.0"),
                [escape("\"command\": the argv of a program that reads {\"DATA_TYPE\": "
                        "\"identity_mapping_input#1.0.0\", \"identities\": [...]} on stdin and prints "
                        "{\"DATA_TYPE\": \"identity_mapping_output#1.0.0\", \"result\": [{\"id\": ..., \"output\": "
                        "USER}]}; an empty result tries the next document, any other failure refuses the identity. "
                        "It may take identity_mapping_timeout seconds.")]),
        ".PP", escape("Then allowed_identities, allowed_domains, min_uid and allow_privileged_mapping decide; "
                      "gce idmap test NAME IDENTITY shows the outcome. Example, as gce configure writes it:"),
        *_example("identity_mapping.json"),
        section("SEE ALSO"), f"{bold('gce')}(1),\n{bold('gce-configure')}(1),\n{bold('gce-render-user-config')}(1),\n"
                             f"{bold('gce-idmap-test')}(1)",
    ]
    return page(lines)
