"""What gce relies on in parsl beyond its documented interface, each in one small function.

A user endpoint drives parsl's HighThroughputExecutor without a DataFlowKernel, so it does a
few things the DataFlowKernel does for parsl, and a few parsl offers no public way to do. Each
such reach-in lives here, checks what it relies on, and raises ParslChanged naming the installed
parsl version and what changed, instead of failing later as an AttributeError or a KeyError, or
silently (a flag parsl no longer reads). tests/uep/test_parsl_internals.py runs every one of them
against real parsl objects, so a parsl upgrade that breaks one fails there first.
"""

from __future__ import annotations

import importlib
from typing import Any

from gce.errors import EX_SOFTWARE, GceError

# Modules parsl starts by name, which gce runs itself (gce.uep.interchange, gce.uep.worker_pool).
INTERCHANGE = "parsl.executors.high_throughput.interchange"
WORKER_POOL = "parsl.executors.high_throughput.process_worker_pool"
# The keys of parsl's connected_managers() entries that the engine's status reads.
MANAGER_KEYS = ("worker_count", "tasks", "active", "manager", "block_id", "python_version", "parsl_version")


def parsl_version() -> str:
    try:
        return str(importlib.import_module("parsl").__version__)
    except Exception as e:  # an unimportable parsl is named as such, not hidden behind this error
        return f"(parsl not importable: {type(e).__name__}: {e})"


class ParslChanged(GceError):
    """The installed parsl no longer has something gce relies on; str() says what."""

    exit_code = EX_SOFTWARE

    def __init__(self, changed: str) -> None:
        version = parsl_version()
        super().__init__(f"gce cannot drive parsl {version}", changed,
                         hint=f"install the parsl version that worked before (pip install 'parsl==VERSION') "
                         f"until gce supports parsl {version}")
        self.version = version


def build(kind: str, spec: dict[str, Any], module: str) -> Any:
    """The parsl object (provider, launcher) a config's SPEC describes: its ``type`` names a class
    of MODULE, the rest are its arguments; a provider's ``launcher`` is built the same way."""
    spec = dict(spec)
    cls = getattr(importlib.import_module(module), spec.pop("type"))
    if kind == "provider" and "launcher" in spec:
        spec["launcher"] = build("launcher", spec["launcher"], "parsl.launchers")
    return cls(**spec)


def skip_first_scale_out(poller: Any, label: str) -> None:
    """Tell POLLER's strategy that the executor LABEL has had its init_blocks already: the engine
    starts them itself at once rather than on the strategy's first tick (cold start matters),
    and the strategy would otherwise start them a second time. parsl keeps this as the
    ``first`` flag of the executor's entry in the private ``JobStatusPoller._strategy``."""
    executors = getattr(getattr(poller, "_strategy", None), "executors", None)
    entry = executors.get(label) if isinstance(executors, dict) else None
    if not isinstance(entry, dict) or "first" not in entry:
        raise ParslChanged(f"JobStatusPoller._strategy.executors[{label!r}]['first'] is gone (it told the scaling "
                           "strategy that init_blocks were started already); found "
                           f"{type(executors).__name__} {_keys(executors)} for the executors, entry {_keys(entry)}")
    entry["first"] = False


def scale_out(htex: Any, blocks: int) -> list[str]:
    """Start BLOCKS blocks of HTEX now (parsl's strategy calls the same method)."""
    method = getattr(htex, "scale_out_facade", None)
    if not callable(method):
        raise ParslChanged(f"{type(htex).__name__}.scale_out_facade(n), which starts n blocks, is gone")
    return list(method(blocks))


def gate_scale_out(htex: Any, allowed: Any) -> None:
    """Make HTEX start no block while ALLOWED() is false: parsl's scaling strategy (and the engine)
    start blocks only through ``scale_out_facade``, which then starts none."""
    method = getattr(htex, "scale_out_facade", None)
    if not callable(method):
        raise ParslChanged(f"{type(htex).__name__}.scale_out_facade(n), which starts n blocks, is gone")

    def gated(blocks: int) -> list[str]:
        return list(method(blocks)) if allowed() else []

    htex.scale_out_facade = gated


def poll_every(provider: Any, seconds: float) -> None:
    """Make parsl poll PROVIDER's scheduler every SECONDS: parsl reads the interval from the
    provider class's ``status_polling_interval`` property (60 s for Slurm, 5 s for LocalProvider),
    which no argument sets; the provider becomes an instance of a subclass of the same name."""
    cls = type(provider)
    if not isinstance(getattr(cls, "status_polling_interval", None), property):
        raise ParslChanged(f"{cls.__name__}.status_polling_interval, how often parsl polls the scheduler, "
                           "is no longer a property")
    provider.__class__ = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__doc__": cls.__doc__,
                                                      "status_polling_interval": property(lambda self: seconds)})


def connected_managers(htex: Any) -> list[dict[str, Any]]:
    """HTEX's connected worker pools, each with at least MANAGER_KEYS."""
    managers = htex.connected_managers()
    if not isinstance(managers, list):
        raise ParslChanged(f"{type(htex).__name__}.connected_managers() returned a {type(managers).__name__}, "
                           "not a list of dicts")
    for m in managers:
        missing = [k for k in MANAGER_KEYS if not isinstance(m, dict) or k not in m]
        if missing:
            raise ParslChanged(f"an entry of {type(htex).__name__}.connected_managers() lacks "
                               f"{', '.join(missing)}; it has {_keys(m)}")
    return managers


def _dict_of(owner: Any, attr: str, what: str) -> dict[Any, Any]:
    """OWNER's attribute ATTR, which parsl keeps as a dict of WHAT; ParslChanged when it is not."""
    value = getattr(owner, attr, None)
    if not isinstance(value, dict):
        raise ParslChanged(f"{type(owner).__name__}.{attr}, {what}, is {type(value).__name__}, not a dict")
    return value


def block_states(htex: Any) -> dict[str, Any]:
    """HTEX's blocks by id, each a parsl JobStatus: ``.terminal`` and ``.state.name``."""
    blocks = _dict_of(htex, "status_facade", "the blocks' states by block id")
    for status in blocks.values():
        if not isinstance(getattr(status, "terminal", None), bool) or not isinstance(
                getattr(getattr(status, "state", None), "name", None), str):
            raise ParslChanged(f"a block's status in {type(htex).__name__}.status_facade is {status!r}: it has "
                               "no boolean .terminal or no .state.name")
    return blocks


def block_jobs(htex: Any) -> dict[str, Any]:
    """HTEX's job id of each block it submitted, by block id."""
    return dict(_dict_of(htex, "blocks_to_job_id", "the job id of each block"))


def job_files(provider: Any, job_id: Any) -> tuple[str | None, str | None, str | None]:
    """The submit script, stdout and stderr paths of PROVIDER's job JOB_ID, as far as it keeps them:
    LocalProvider keeps the script (its output is the script's path + .out/.err), the batch
    providers keep the output paths (their script is that path without .stdout)."""
    job = (getattr(provider, "resources", None) or {}).get(job_id)
    if not isinstance(job, dict):
        return None, None, None
    script = job.get("script_path")
    if isinstance(script, str):
        return script, script + ".out", script + ".err"
    out, err = job.get("job_stdout_path"), job.get("job_stderr_path")
    if isinstance(out, str) and out.endswith(".stdout"):
        script = out[: -len(".stdout")]
    return script, out if isinstance(out, str) else None, err if isinstance(err, str) else None


def watch_scheduler(provider: Any, run: Any = None) -> Any:
    """The scheduler's own word for each job's state and its reason, by job id, as PROVIDER's own
    status command last printed them (a gce.uep.accounting.SchedulerWatch, kept up to date): the
    command is run by RUN (accounting.run_command: killed past the provider's cmd_timeout) instead
    of parsl's runner, and what parsl reads of it is the SchedulerWatch's. SlurmProvider's squeue is
    asked for the reason too (``%r``): parsl reads only the first two words of each line. A provider
    without a status command (LocalProvider) yields an empty one."""
    from gce.uep.accounting import SchedulerWatch, run_command

    words = SchedulerWatch("", run or run_command)
    cmd = getattr(provider, "_cmd", None)
    if not isinstance(cmd, str) or not callable(getattr(provider, "execute_wait", None)):
        return words
    if "--format='%i %t'" in cmd:
        provider._cmd = cmd = cmd.replace("--format='%i %t'", "--format='%i %t %r'")
    words.program = cmd.split()[0]
    execute_wait = provider.execute_wait

    def watched(command: str, *args: Any, **kwargs: Any) -> Any:
        if command.split()[:1] != [words.program]:
            return execute_wait(command, *args, **kwargs)
        timeout = kwargs.get("timeout", args[0] if args else None) or getattr(provider, "cmd_timeout", None)
        return words.status_command(command, timeout)

    provider.execute_wait = watched
    return words


# A command gce's interchange answers besides parsl's: per connected worker pool, what parsl's
# MANAGERS leaves out (its host, its last heartbeat, the ids of the tasks it was given).
MANAGER_DETAIL = "GCE_MANAGER_DETAIL"
# The lines of parsl's interchange module that run it as a program; gce.uep.interchange does the
# same after teaching it MANAGER_DETAIL, and runs the module as parsl wrote it when they differ.
INTERCHANGE_MAIN = ("config = pickle.load(sys.stdin.buffer)", "ic = Interchange(**config)", "ic.start()")


def teach_manager_detail(module: Any) -> bool:
    """Make the Interchange of MODULE (parsl's interchange module, imported) answer MANAGER_DETAIL.
    False, with nothing changed, when what this relies on is not there: the command then gets
    parsl's answer to an unknown command, None."""
    import inspect

    cls = getattr(module, "Interchange", None)
    original = getattr(cls, "process_command", None)
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    if original is None or not all(line in source for line in INTERCHANGE_MAIN) \
            or "self.socks.get(self.command_channel)" not in inspect.getsource(original):
        return False
    import zmq

    class Replay:
        """The command channel, with the request already read handed back to parsl's code."""

        def __init__(self, channel: Any, request: Any) -> None:
            self.channel, self.request = channel, request

        def recv_pyobj(self, *args: Any, **kwargs: Any) -> Any:
            return self.request

        def __getattr__(self, name: str) -> Any:
            return getattr(self.channel, name)

    def process_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        channel = self.command_channel
        if self.socks.get(channel) != zmq.POLLIN:
            return original(self, *args, **kwargs)
        request = channel.recv_pyobj()
        if request == MANAGER_DETAIL:
            channel.send_pyobj({key.decode(errors="replace"): {
                "hostname": m.get("hostname"), "last_heartbeat": m.get("last_heartbeat"),
                "tasks": list(m.get("tasks") or [])} for key, m in self._ready_managers.items()})
            return None
        socks, replay = self.socks, Replay(channel, request)
        self.command_channel, self.socks = replay, {**socks, replay: zmq.POLLIN}
        try:
            return original(self, *args, **kwargs)
        finally:
            self.command_channel, self.socks = channel, socks

    setattr(cls, "process_command", process_command)
    return True


def manager_detail(htex: Any) -> dict[str, dict[str, Any]]:
    """By manager id: its hostname, last heartbeat (epoch seconds) and the HTEX task ids it was
    given, from gce's interchange; {} from an interchange that does not know the command."""
    reply = htex.command_client.run(MANAGER_DETAIL)
    return reply if isinstance(reply, dict) else {}


def lost_worker_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a HTEX task fails with when its worker or its whole worker pool died."""
    module = "parsl.executors.high_throughput.errors"
    try:
        errors = importlib.import_module(module)
        return (errors.WorkerLost, errors.ManagerLost)
    except (ImportError, AttributeError) as e:
        raise ParslChanged(f"{module}.WorkerLost or ManagerLost is gone ({e}): a task whose worker died "
                           "could not be told from one that failed") from None


def launch_cmd_with_pool(pool: str) -> str:
    """HTEX's default worker launch command, with POOL (a shell word) run in place of parsl's
    process_worker_pool.py."""
    from parsl.executors.high_throughput import executor

    default = getattr(executor, "DEFAULT_LAUNCH_CMD", None)
    if not isinstance(default, str) or not default.startswith("process_worker_pool.py "):
        raise ParslChanged("parsl.executors.high_throughput.executor.DEFAULT_LAUNCH_CMD no longer starts with "
                           f"process_worker_pool.py: {default!r}")
    return default.replace("process_worker_pool.py", pool, 1)


def mark_jobs_known(provider: Any, jobs: list[Any]) -> None:
    """Make a freshly built PROVIDER know JOBS (submitted by a previous provider), so that its
    cancel() cancels them: parsl's providers only cancel the jobs in their ``resources``."""
    known = _dict_of(provider, "resources", "the jobs a provider knows by job id")
    from parsl.jobs.states import JobState, JobStatus

    for job in jobs:
        known.setdefault(job, {"job_id": job, "status": JobStatus(JobState.UNKNOWN)})


def _keys(value: object) -> str:
    return f"keys {sorted(map(str, value))}" if isinstance(value, dict) else type(value).__name__


def submit_in_context(htex: Any, extra: dict[str, Any], fn: Any, resource_spec: dict[str, Any], *args: Any) -> Any:
    """HTEX.submit(FN, RESOURCE_SPEC, *ARGS) with EXTRA in the task's context, which parsl hands to
    the interchange (gce.uep.placement reads it there) and the worker pool (which reads only its own
    keys). Through submit_payload, parsl's public way to submit a payload with a context."""
    from parsl.serialize import pack_apply_message

    htex.validate_resource_spec(resource_spec)
    context: dict[str, Any] = {"resource_spec": resource_spec} if resource_spec else {}
    context.update(extra)
    return htex.submit_payload(context, pack_apply_message(fn, args, {}, buffer_threshold=1 << 20))
