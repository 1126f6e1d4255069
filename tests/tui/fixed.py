"""A fixed Snapshot for the screenshot tests: no clock, pid or path that changes from run to run.

Two endpoints: a multi-user one on Slurm (two user endpoints, blocks pending and running, a node,
tasks, one of them failed with hostile text) and a stopped one."""

from __future__ import annotations

from gce.tui.collect import EndpointView, Snapshot

T = 1_800_000_000.0  # every time is this one, or seconds before it
HOSTILE_NAME = "[bold red]x[/]"


def _block(block_id, job, state, raw, age, left, workers, reason=""):
    return {"block_id": block_id, "job_id": job, "provider": "SlurmProvider", "state": state, "raw_state": raw,
            "reason": reason, "submitted_at": T - age, "updated_at": T - 5, "walltime": "01:00:00",
            "walltime_left": left, "workers": workers,
            "transitions": [{"at": T - age, "state": "pending", "raw_state": "PENDING", "reason": "Priority"}],
            "submit_script": None, "stdout": None, "stderr": None}


def _uep(key, pid, state, done, failed, blocks=(), nodes=(), reason="", idle=3.0, stops_in=None):
    return {"key": key, "pid": pid, "state": state, "reason": reason, "python": "3.11.2", "in_flight": 1,
            "queued": 0, "started_at": T - 600, "idle_for": idle, "stops_in": stops_in,
            "engine": {"type": "HighThroughputEngine", "outstanding": 1, "done": done, "failed": failed,
                       "blocks": len(blocks), "managers": len(nodes), "workers_total": 4, "workers_idle": 3,
                       "versions": {"python": "3.11.2", "parsl": "2025.1.6", "gce": "0.1.0"},
                       "block_list": list(blocks), "nodes": list(nodes)}}


def _task(tid, fn, who, state, queued, ran, code="", message="", uep="alice/3f2a", age=10.0):
    return {"task_id": tid, "function_name": fn, "submitter": who, "state": state, "event": state,
            "queued_for": queued, "ran_for": ran, "code": code, "message": message, "uep": uep, "at": T - age}


def snapshot() -> Snapshot:
    status = {
        "name": "cluster", "endpoint_id": "0b6e6d3c-1c1e-4b7e-9a51-5f4d2c8e9a10", "state": "running",
        "host": "login01", "uptime": 7384.0, "gce_version": "0.1.0", "engine_type": "HighThroughputEngine",
        "broker": {"url": "amqps://broker.example.org/gce", "connected": True, "last_error": None},
        "tasks": {"received": 42, "completed": 38, "failed": 3, "in_flight": 1},
        "user_endpoints": [
            _uep("alice/3f2a", 4242, "running", 30, 2, stops_in=1797.0,
                 blocks=[_block("0", "81234", "running", "RUNNING", 1500, 2100.0, 2),
                         _block("1", "81240", "pending", "PENDING", 60, None, 0, "Priority")],
                 nodes=[{"manager": "a1b2c3", "host": "node01", "block_id": "0", "workers": 4, "busy": 1, "idle": 3,
                         "last_heartbeat": T - 2, "python": "3.11.2", "parsl": "2025.1.6",
                         "tasks": [{"task_id": "7d1c", "started_at": T - 42}]}]),
            _uep("bob/9e01", 4250, "backoff", 8, 1, reason="exit status 1: ModuleNotFoundError: numpy", idle=None),
        ],
    }
    tasks = (
        _task("7d1c", "simulate", "alice@example.org", "dispatched", 0.4, None, age=42),
        _task("5b2e", HOSTILE_NAME, "alice@example.org", "failed", 0.2, 1.5, "TASK_EXCEPTION",
              "ValueError: \x1b]0;pwned\x07bad input", age=90),
        _task("3a9f", "square", "bob@example.org", "success", 0.1, 0.02, uep="bob/9e01", age=120),
    )
    running = EndpointView("cluster", "running", status=status, tasks=tasks, cursor=17,
                           rates=tuple((i % 5 * 0.4, i % 4 * 0.5) for i in range(30)), rss={"alice/3f2a": 95_000_000},
                           seen_at=T)
    stopped = EndpointView("laptop", "stopped")
    return Snapshot(T, (running, stopped))


LOG = ("2027-01-15 08:00:00 INFO manager started (pid 4000)\n"
       "2027-01-15 08:00:01 INFO connected to amqps://broker.example.org/gce\n"
       "2027-01-15 08:00:02 WARNING user endpoint bob/9e01 exited: [red]status 1[/] \x1b]0;pwned\x07\n")
