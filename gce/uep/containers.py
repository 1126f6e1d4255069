"""Worker pools in containers: ``container_type``, ``container_uri`` and ``container_cmd_options``.

A HighThroughputEngine starts each block's worker pool with one shell command (parsl's
``launch_cmd``); a container engine runs that command inside an image instead. The command
shapes are Globus Compute's, so a config written for it means the same here:

- docker, podman, podman-hpc: ``CMD run OPTIONS -v RUN_DIR:RUN_DIR -t IMAGE LAUNCH_CMD``
- apptainer, singularity: ``CMD run OPTIONS IMAGE LAUNCH_CMD``
- custom: OPTIONS itself, with ``{EXECUTOR_RUNDIR}`` and ``{EXECUTOR_LAUNCH_CMD}`` replaced

with these differences, each for a failure Globus Compute leaves to its users: a docker-like
container is started with ``--rm`` (else every block leaves a stopped container behind) and
``--init`` (the pool would be its process 1, which the kernel spares the SIGTERM of a block's
scale-in: the container then lingered until the pool missed its interchange's heartbeats); a
worker pool whose container exits non-zero prints the command it ran on its stderr, which the
failing-block breaker quotes to the task (gce.uep.breaker), so a missing image is named to the
submitter rather than found in a block's log; and a custom template without
``{EXECUTOR_LAUNCH_CMD}`` is refused instead of silently starting no worker.

The process and thread pools refuse a container: their workers are the user endpoint's own
processes or threads (a process pool hands tasks to its workers over pipes they inherit), so
there is no command to wrap; a HighThroughputEngine with a LocalProvider runs worker pools on
this host, in the container.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from gce.config.schema import CONTAINER_TYPES

KEYS = ("container_type", "container_uri", "container_cmd_options")
DOCKER_LIKE = ("docker", "podman", "podman-hpc")
APPTAINER_LIKE = ("apptainer", "singularity")
RUN_DIR = "{EXECUTOR_RUNDIR}"
LAUNCH_CMD = "{EXECUTOR_LAUNCH_CMD}"
POOLS = ("ProcessPoolEngine", "ThreadPoolEngine")

assert set(CONTAINER_TYPES) == set(DOCKER_LIKE + APPTAINER_LIKE + ("custom",))


@dataclass(frozen=True)
class Container:
    type: str
    uri: str
    options: str

    def wrap(self, launch_cmd: str, run_dir: str) -> str:
        """LAUNCH_CMD (a parsl launch command template) run in this container. parsl formats the
        result twice (its options, then each block's id), so what came from the config is
        escaped for both and LAUNCH_CMD's own placeholders are left as they are."""
        if self.type == "custom":
            template = _literal(self.options).replace(_literal(RUN_DIR), _literal(run_dir))
            return template.replace(_literal(LAUNCH_CMD), launch_cmd)
        uri, options = _literal(self.uri), _literal(self.options)
        if self.type in APPTAINER_LIKE:
            words = [self.type, "run", options, uri, launch_cmd]
        else:
            mount = _literal(shlex.quote(f"{run_dir}:{run_dir}"))
            words = [self.type, "run", "--rm", "--init", options, "-v", mount, "-t", uri, launch_cmd]
        command = " ".join(w for w in words if w)
        # Said where the breaker reads it (the block's stderr) when the container does not run.
        note = _literal(shlex.quote(f"gce: the worker pool's {self.type} container (image {self.uri}) failed; "
                                    "its command was:"))
        shown = shlex.quote(command)  # formatted by parsl like the command, so it shows what ran
        return f"{command} || (s=$?; echo {note} >&2; echo {shown} >&2; exit $s)"


def _literal(text: str) -> str:
    """TEXT as it must appear in a launch command so that it comes out of parsl's two
    str.format passes as TEXT (its braces doubled twice)."""
    return text.replace("{", "{{{{").replace("}", "}}}}")


def problem(engine: dict[str, Any]) -> str | None:
    """Why ENGINE's container settings cannot work (one sentence naming the key), or None."""
    kind, uri, options = (engine.get(k) for k in KEYS)
    if kind is None:
        stray = next((k for k in KEYS[1:] if engine.get(k) is not None), None)
        return f"{stray} has no effect without container_type" if stray else None
    if kind not in CONTAINER_TYPES:
        return f"container_type {str(kind)[:40]!r} is not one of {', '.join(CONTAINER_TYPES)}"
    if engine.get("type") in POOLS:
        return (f"container_type: a {engine.get('type')}'s workers are the user endpoint's own processes or "
                "threads, so they cannot run in a container; use a HighThroughputEngine (with a LocalProvider "
                "its worker pools run on this host, in the container)")
    if kind == "custom":
        if not options or LAUNCH_CMD not in options:
            return (f"container_cmd_options: container_type custom needs a command template holding {LAUNCH_CMD} "
                    f"(where the worker pool's command goes) and, if it mounts it, {RUN_DIR}")
    elif not uri:
        return f"container_uri: container_type {kind} needs the image to run the worker pools in"
    return None


def take_options(options: dict[str, Any], engine_type: str = "HighThroughputEngine") -> Container | None:
    """Take the container keys out of OPTIONS (an ENGINE_TYPE's, without its type: parsl takes
    none of them): the container its worker pools run in, or None. ValueError naming what
    cannot work."""
    why = problem({**options, "type": engine_type})
    if why is not None:
        raise ValueError(f"engine.{why}")
    kind, uri, extra = (options.pop(k, None) for k in KEYS)
    return None if kind is None else Container(str(kind), str(uri or ""), str(extra or ""))
