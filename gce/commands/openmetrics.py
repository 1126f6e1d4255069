"""A running endpoint's figures in the OpenMetrics text format (`gce status --format openmetrics`).

For node_exporter's textfile collector and anything else that scrapes a file: each family has its
`# TYPE`, `# HELP` (and `# UNIT` where it has one), counters' samples end in `_total`, the text ends
with `# EOF` (https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md).
Every sample carries the endpoint's name as label `endpoint`, so several endpoints' files can be
collected side by side.

Only gauges and counters: node_exporter's textfile collector reads the older Prometheus text format
(prometheus/node_exporter#1988), where `info` and `stateset` are unknown types that fail the whole
file, while `# UNIT` and `# EOF` are comments; it reads a counter's `_total` samples as untyped. Label values come from users (a user endpoint's key holds a local user
name) and are escaped as the format says, so none can end its label or start a line.
"""

from __future__ import annotations

from typing import Union

from gce.daemon.client import EndpointStatus

Labels = dict[str, str]
Number = Union[int, float]

# A user endpoint's states (gce/daemon/states.py): each has its sample, 0 or 1 (as a stateset would
# give them), so a state that stops being current reads 0 rather than vanishing. A state this list
# lacks (a newer manager's) is added for the user endpoint that is in it.
UEP_STATES = ("starting", "running", "backoff", "fatal", "stopping", "stopped", "compromised")
_COUNTERS = (("received", "Tasks the endpoint took from the broker."),
             ("completed", "Tasks that ended in a result."),
             ("failed", "Tasks that ended in an error."),
             ("malformed", "Task messages refused as malformed, or that the endpoint could not handle."),
             ("duplicates", "Task messages dropped as copies of a task already taken or answered."),
             ("violations", "Protocol violations by user endpoints (each stops the one that sent it)."))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Number) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return repr(float(value)) if isinstance(value, float) else str(value)


class Exposition:
    """The text, one metric family after another (the format forbids interleaving them)."""

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.lines: list[str] = []

    def family(self, name: str, type_: str, help_: str, unit: str = "") -> None:
        self.lines.append(f"# TYPE {name} {type_}")
        if unit:
            self.lines.append(f"# UNIT {name} {unit}")
        self.lines.append(f"# HELP {name} {escape_label(help_)}")

    def sample(self, name: str, value: Number, **labels: str) -> None:
        pairs = ",".join(f'{k}="{escape_label(v)}"' for k, v in {**self.labels, **labels}.items())
        self.lines.append(f"{name}{{{pairs}}} {_number(value)}")

    def gauge(self, name: str, help_: str, value: Number | None, unit: str = "") -> None:
        if value is not None:
            self.family(name, "gauge", help_, unit)
            self.sample(name, value)

    def text(self) -> str:
        return "\n".join([*self.lines, "# EOF"]) + "\n"


def stopped(name: str) -> str:
    """The text for an endpoint whose manager does not run: it is down, and nothing else is known."""
    out = Exposition({"endpoint": name})
    out.gauge("gce_up", "1 while the endpoint's manager runs (degraded too), 0 when it does not.", 0)
    return out.text()


def exposition(name: str, status: EndpointStatus) -> str:
    """The figures of running endpoint NAME, from its manager's STATUS."""
    out = Exposition({"endpoint": name})
    out.gauge("gce_up", "1 while the endpoint's manager runs (degraded too), 0 when it does not.", 1)
    out.gauge("gce_degraded", "1 while the endpoint runs but takes no tasks (gce status says why).",
              status.state == "degraded")
    out.gauge("gce_broker_connected", "1 while the manager is connected to its broker.", status.broker.connected)
    out.gauge("gce_spool_unwritable", "1 while the task spool cannot be written (no tasks are taken then).",
              bool(status.spool.error))
    out.gauge("gce_uptime_seconds", "How long the manager has run.", status.uptime, unit="seconds")
    if status.gce_version:
        out.family("gce_build_info", "gauge", "1, labelled with the gce version the manager runs.")
        out.sample("gce_build_info", 1, version=status.gce_version)
    tasks = status.tasks.to_dict()
    for key, help_ in _COUNTERS:
        out.family(f"gce_tasks_{key}", "counter", help_)
        out.sample(f"gce_tasks_{key}_total", tasks[key])
    out.gauge("gce_tasks_in_flight", "Tasks taken and not yet answered.", status.tasks.in_flight)
    out.gauge("gce_results_unconfirmed", "Results spooled that the broker has not yet confirmed.",
              status.tasks.unconfirmed_results)
    _user_endpoints(out, status)
    return out.text()


def _user_endpoints(out: Exposition, status: EndpointStatus) -> None:
    ueps = status.user_endpoints
    if not ueps:
        return
    out.family("gce_user_endpoint_state", "gauge", "1 for the state each user endpoint is in, 0 for the others.")
    for uep in ueps:
        for state in UEP_STATES + ((uep.state,) if uep.state and uep.state not in UEP_STATES else ()):
            out.sample("gce_user_endpoint_state", int(state == uep.state), uep=uep.key, state=state)
    out.family("gce_user_endpoint_blocks_failing", "gauge", "1 while the user endpoint's engine submits no blocks "
               "because its last ones failed one after the other (gce resume NAME after fixing its config).")
    for uep in ueps:
        out.sample("gce_user_endpoint_blocks_failing", int(uep.blocks_failing), uep=uep.key)
    for name, field, help_ in (("workers", "workers_total", "Workers of the user endpoint's engine."),
                               ("workers_idle", "workers_idle", "Workers with no task."),
                               ("blocks", "blocks", "Blocks (batch jobs or local pools) of the engine that are not over.")):
        values = [(uep.key, getattr(uep.engine, field)) for uep in ueps]
        values = [(key, value) for key, value in values if value is not None]
        if values:
            out.family(f"gce_user_endpoint_{name}", "gauge", help_)
            for key, value in values:
                out.sample(f"gce_user_endpoint_{name}", value, uep=key)
