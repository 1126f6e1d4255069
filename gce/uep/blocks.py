"""The batch jobs a user endpoint's engine submitted, and ``python -m gce.uep.blocks``, which
cancels the ones a dead user endpoint left behind.

parsl cancels its blocks when its engine shuts down; a UEP killed by SIGKILL (or the kernel's
out-of-memory killer) never does, and its Slurm or PBS jobs would hold their nodes until their
walltime. So the engine records each job its provider submits, with the provider's config, in
``RUN_DIR/blocks.json``, and forgets it once it is cancelled or has ended. Once the UEP is gone
its manager starts this module as the same user, in the same environment, and it cancels what
is left with the provider's own command (``scancel``, ``qdel``...). Root never reads the file:
it is the user's, and so are the jobs it names; a user who edits it can only cancel their own.

LocalProvider's blocks are processes of this host, which the manager kills with the rest of
the UEP's session (gce.daemon.proctree): they are not recorded.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("gce.uep.blocks")

LEDGER = "blocks.json"


class Ledger:
    """The jobs of one provider not yet known to be over, kept in RUN_DIR/blocks.json."""

    def __init__(self, run_dir: str, provider_spec: dict) -> None:
        self.path = Path(run_dir, LEDGER)
        self.spec = provider_spec
        self.jobs: list[Any] = []
        self._lock = threading.Lock()  # the engine's scaling thread and its shutdown both write

    def add(self, job_id: Any) -> None:
        with self._lock:
            self.jobs.append(job_id)
            self._write()

    def forget(self, job_ids: list) -> None:
        with self._lock:
            left = [j for j in self.jobs if j not in job_ids]
            if left != self.jobs:
                self.jobs = left
                self._write()

    def _write(self) -> None:
        # Written whole and renamed into place: a UEP killed mid-write leaves the previous list.
        tmp = self.path.with_name(f".{LEDGER}.{os.getpid()}")
        tmp.write_text(json.dumps({"provider": self.spec, "jobs": self.jobs}))
        os.replace(tmp, self.path)


def track(provider: Any, provider_spec: dict, run_dir: str) -> Ledger:
    """Record in RUN_DIR every job PROVIDER submits from now on, until it cancels it or reports it over."""
    ledger = Ledger(run_dir, provider_spec)
    submit, cancel, status = provider.submit, provider.cancel, provider.status

    def tracked_submit(*args: Any, **kwargs: Any) -> Any:
        job_id = submit(*args, **kwargs)
        if job_id is not None:
            ledger.add(job_id)
        return job_id

    def tracked_cancel(job_ids: list, *args: Any, **kwargs: Any) -> Any:
        done = cancel(job_ids, *args, **kwargs)
        ledger.forget([j for j, ok in zip(job_ids, done or []) if ok])
        return done

    def tracked_status(job_ids: list, *args: Any, **kwargs: Any) -> Any:
        states = status(job_ids, *args, **kwargs)
        ledger.forget([j for j, s in zip(job_ids, states or []) if getattr(s, "terminal", False)])
        return states

    provider.submit, provider.cancel, provider.status = tracked_submit, tracked_cancel, tracked_status
    return ledger


def cancel_left_behind(run_dir: str) -> list:
    """Cancel the jobs recorded in RUN_DIR; the ones the provider could not cancel (already over,
    mostly). The record is removed either way: it is not tried twice."""
    path = Path(run_dir, LEDGER)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    jobs = data.get("jobs") or []
    if jobs:
        from gce.uep import parsl_compat

        provider = parsl_compat.build("provider", data["provider"], "parsl.providers")
        parsl_compat.mark_jobs_known(provider, jobs)  # a fresh provider cancels only the jobs it knows
        done = provider.cancel(jobs) or []
        failed = [j for j, ok in zip(jobs, done) if not ok] + jobs[len(done):]
    else:
        failed = []
    path.unlink()
    return failed


def main() -> int:
    from gce.config.uep import UepIdentity
    from gce.uep.startup import Refusal, check_identity

    logging.basicConfig(format="%(asctime)s %(levelname)s gce-blocks[%(process)d]: %(message)s", level=logging.INFO)
    logging.getLogger("parsl").setLevel(logging.WARNING)
    conf = json.loads(sys.stdin.buffer.read() or b"{}")
    try:
        identity = UepIdentity.from_dict(conf["identity"]) if conf.get("identity") else None
        check_identity(identity)  # prove the drop before acting, as the UEP does
        failed = cancel_left_behind(conf["run_dir"])
    except Refusal as e:
        log.error("not cancelling the batch jobs of a dead user endpoint: %s", e)
        return 1
    except Exception as e:
        log.error("cancelling the batch jobs of a dead user endpoint failed: %s: %s", type(e).__name__, e)
        return 1
    if failed:
        log.warning("could not cancel batch jobs %s of a dead user endpoint (they may be over already)",
                    ", ".join(map(str, failed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
