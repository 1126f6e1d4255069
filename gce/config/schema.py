"""The JSON schema of an endpoint's config.yaml."""

from __future__ import annotations

from typing import Any

# What `gce configure` writes when it was given no broker URL: it names no account, so it
# cannot be used as it is (gce.config.model.check_broker_account says so).
PLACEHOLDER_BROKER_URL = "amqp://127.0.0.1:5672/gce"

ENGINE_TYPES = ("HighThroughputEngine", "ProcessPoolEngine", "ThreadPoolEngine", "MPIEngine", "GlobusMPIEngine")
MPI_ENGINE_TYPES = ("MPIEngine", "GlobusMPIEngine")  # parsl's MPIExecutor (gce/uep/mpi.py); Globus Compute's name too
PROVIDER_TYPES = (
    "LocalProvider",
    "SlurmProvider",
    "PBSProProvider",
    "TorqueProvider",
    "CondorProvider",
    "GridEngineProvider",
    "LSFProvider",
    "KubernetesProvider",
)
LAUNCHER_TYPES = ("SingleNodeLauncher", "SrunLauncher", "AprunLauncher", "MpiExecLauncher", "SimpleLauncher")
# What a HighThroughputEngine's worker pools may run in (gce/uep/containers.py), as Globus Compute names them.
CONTAINER_TYPES = ("apptainer", "singularity", "podman", "podman-hpc", "docker", "custom")

_positive_int = {"type": "integer", "minimum": 1}
# Shell commands the user endpoint runs as its user before its engine starts and after it stops
# (gce/uep/setup_teardown.py): in config.yaml, and in what a user config template renders.
SETUP_TEARDOWN: dict[str, Any] = {
    "endpoint_setup": {"type": "string"},
    "endpoint_teardown": {"type": "string"},
    # A user endpoint not ready within 300 s is killed (gce.daemon.children.START_TIMEOUT): setup must end before.
    "endpoint_setup_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 270},
}
# The kinds of function body a task may carry (gce/uep/policy.py): in config.yaml and in what a user
# config template renders, where they can only narrow config.yaml's.
ALLOWED_SERIALIZERS: dict[str, Any] = {
    "type": ["array", "null"], "items": {"enum": ["cloudpickle", "source"]}, "uniqueItems": True,
}
_nonneg_int = {"type": "integer", "minimum": 0}
_positive_number = {"type": "number", "exclusiveMinimum": 0}


def allowed(schema: dict[str, Any]) -> str | None:
    """The range a bounded numeric SCHEMA allows, in words ("an integer from 1 to 100"); None for
    any other schema (a bare lower bound is said well enough by the schema's own message)."""
    kind = {"integer": "an integer", "number": "a number"}.get(str(schema.get("type")))
    low, above, high = schema.get("minimum"), schema.get("exclusiveMinimum"), schema.get("maximum")
    if kind is None or high is None or (low is None and above is None):
        return None
    return f"{kind} from {low} to {high}" if low is not None else f"{kind} above {above} and at most {high}"


PROVIDER: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": list(PROVIDER_TYPES)},
        "init_blocks": _nonneg_int,
        "min_blocks": _nonneg_int,
        "max_blocks": _nonneg_int,
        "nodes_per_block": _positive_int,
        "worker_init": {"type": "string"},
        "walltime": {"type": "string", "pattern": r"^\d+(:\d{2}){0,2}$"},
        "partition": {"type": "string"},
        "account": {"type": "string"},
        "qos": {"type": "string"},
        "scheduler_options": {"type": "string"},
        "launcher": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": list(LAUNCHER_TYPES)}},
        },
    },
}

ENGINE: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": list(ENGINE_TYPES)},
        "max_workers_per_node": _positive_int,
        "max_workers": _positive_int,
        "cores_per_worker": _positive_number,
        "strategy_period": _positive_number,
        "max_idletime": {"type": "number", "minimum": 0},
        "heartbeat_period": _positive_int,
        "heartbeat_threshold": _positive_int,
        "address": {"type": "string"},
        "worker_debug": {"type": "boolean"},
        "provider": PROVIDER,
        # The failing-block breaker (gce/uep/breaker.py) and the scheduler's commands: blocks only.
        "block_failure_limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "block_grace_period": {"type": "number", "minimum": 0},
        "scheduler_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        # Seconds between polls of the scheduler (default: parsl's, 60 for Slurm): failed blocks are
        # seen, and the breaker opens, that much sooner.
        "scheduler_poll_period": {"type": "number", "minimum": 1, "maximum": 3600},
        # Worker pools in a container (gce/uep/containers.py); a pool engine refuses them.
        "container_type": {"enum": list(CONTAINER_TYPES)},
        "container_uri": {"type": "string", "minLength": 1},
        "container_cmd_options": {"type": "string"},
        # Runs of a task whose worker died, after its first (gce/uep/retries.py); a task's own value wins.
        "max_retries_on_system_failure": {"type": "integer", "minimum": 0, "maximum": 10},
        # An MPI engine's: what starts a task's ranks, and how many MPI tasks a block runs at once.
        "mpi_launcher": {"enum": ["mpiexec", "srun", "aprun"]},
        "max_workers_per_block": _positive_int,
        # Where tasks run (gce/uep/sandbox.py): <working_dir>/<task id> when sandboxed; not on a thread pool.
        "run_in_sandbox": {"type": "boolean"},
        "working_dir": {"type": "string", "minLength": 1},
    },
    "allOf": [
        {
            "if": {"properties": {"type": {"const": "HighThroughputEngine"}}},
            "then": {"not": {"required": ["max_workers"]}},
        },
        {  # the working directory belongs to a process: a thread pool's tasks share one
            "if": {"properties": {"type": {"const": "ThreadPoolEngine"}}},
            "then": {"properties": {"run_in_sandbox": False, "working_dir": False}},
        },
        {
            "if": {"properties": {"type": {"enum": ["ProcessPoolEngine", "ThreadPoolEngine"]}}},
            "then": {
                "properties": {
                    "provider": False,
                    "max_workers_per_node": False,
                    "strategy_period": False,
                    "block_failure_limit": False,
                    "block_grace_period": False,
                    "scheduler_timeout": False,
                    "scheduler_poll_period": False,
                    "mpi_launcher": False,
                    "max_workers_per_block": False,
                }
            },
        },
    ],
}

_names = {"type": "array", "items": {"type": "string", "minLength": 1}}

CONFIG: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["broker"],
    # A templated endpoint's engine comes from its user_config_template.yaml.j2.
    "if": {"properties": {"multi_user": {"const": True}}, "required": ["multi_user"]},
    "else": {"required": ["engine"]},
    "additionalProperties": False,
    "properties": {
        "display_name": {"type": "string", "maxLength": 256},
        "broker": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "pattern": r"^amqps?://"},
                "queue_type": {"enum": ["classic", "quorum"]},
                "prefetch": {"type": "integer", "minimum": 1, "maximum": 65535},
                "heartbeat": {"type": "integer", "minimum": 0, "maximum": 3600},
                # Only gce diagnostic uses it (the HTTP Date header gives the broker's clock).
                "management_url": {"type": "string", "pattern": r"^https?://[^/\s]+[^\s]*$"},
            },
        },
        "engine": ENGINE,
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_payload_bytes": _positive_int,
                "max_result_bytes": _positive_int,
                "task_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
                # 0 turns capture off; at most 16 MiB of each stream rides on a result.
                "max_output_bytes": {"type": "integer", "minimum": 0, "maximum": 16 << 20},
            },
        },
        "multi_user": {"type": "boolean"},
        # Multi-user endpoints (relative paths are relative to config.yaml's directory):
        "identity_mapping_config_path": {"type": "string", "minLength": 1},
        "identity_mapping_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
        "user_config_template_path": {"type": "string", "minLength": 1},
        "user_config_schema_path": {"type": "string", "minLength": 1},
        "user_environment_path": {"type": "string", "minLength": 1},
        "allowed_identities": _names,  # broker user names allowed to submit; absent = anyone mapped
        "allowed_domains": _names,  # or: anyone whose broker user name ends in @DOMAIN
        "min_uid": _nonneg_int,  # local accounts below it (and root) are refused ...
        "allow_privileged_mapping": {"type": "boolean"},  # ... unless the admin says so here
        "idle_timeout": {"type": "number", "minimum": 0},  # seconds before an idle UEP stops; 0 = never
        "allowed_functions": {
            "type": ["array", "null"],
            "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
        "allowed_serializers": ALLOWED_SERIALIZERS,
        "status_period": _positive_number,
        "debug": {"type": "boolean"},
        **SETUP_TEARDOWN,
    },
}

# What a user config template may also set, within config.yaml's (gce/uep/policy.py narrows, never widens).
TEMPLATE_POLICY: dict[str, Any] = {k: CONFIG["properties"][k] for k in ("allowed_functions", "allowed_serializers")}
