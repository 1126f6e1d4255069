"""Benchmark of the failing-block breaker, beside bench.py.

The same failing config on both sides: a HighThroughputExecutor whose one LocalProvider block
(init_blocks 1, max_blocks 1, parsl's 5 s strategy period) runs a worker_init that prints a line
and exits 1, so no worker ever connects. LocalProvider, not Slurm: parsl polls a LocalProvider
every 5 s and Slurm every 60 s, and the bench must fit in a few minutes.

- gce: an endpoint "breaker" (engine defaults: block_failure_limit 3) started with `gce start`;
  one task submitted with the SDK's Executor. The row is the seconds from the end of the first
  failing block (the mtime of its exit-code file) to the submitter's BLOCKS_FAILING answer.
- peers: raw parsl, a DataFlowKernel with the same executor and provider, one python_app
  submitted; its answer, if any, timed the same way. Twice: with parsl's defaults (its
  simple_error_handler fails every task for good once all of init_blocks blocks failed: with
  init_blocks 1, after the first failed job, with no way back short of a restart) and with
  block_error_handler=False (parsl then keeps submitting, and its submitter never hears).

All three run for 120 s side by side (the peers in child processes of their own session, killed
with what they started at the end), then the batch jobs each submitted are counted: LocalProvider
writes one submit script per block.

bench.py runs it with --only breaker; alone: .venv/bin/python bench/breaker.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NAMES = ("breaker",)
WINDOW = 120.0
WORKER_INIT = "echo this worker_init fails on purpose; exit 1"
PEERS = {"parsl defaults": {}, "block_error_handler=False": {"block_error_handler": False}}

PEER = """
import json, sys, time
import parsl
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider

run_dir = {run_dir!r}
htex = HighThroughputExecutor(label="peer", address="127.0.0.1", max_workers_per_node=2,
                              provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                                                     worker_init={worker_init!r}), **{options!r})
dfk = parsl.load(Config(executors=[htex], run_dir=run_dir, strategy_period=5))


@parsl.python_app
def noop():
    return None


submitted = time.time()
fut = noop()
answer, error = None, None
try:
    fut.result(timeout={window})
    answer = time.time()
except TimeoutError:
    pass
except Exception as e:
    answer, error = time.time(), f"{{type(e).__name__}}: {{str(e)[:300]}}"
left = {window} - (time.time() - submitted)
if left > 0:
    time.sleep(left)
with open({result!r}, "w") as f:
    json.dump({{"submitted": submitted, "answer": answer, "error": error}}, f)
import os
os._exit(0)  # not dfk.cleanup(): its wait for a never-answered task would block; the bench kills the rest
"""


def noop():
    return None


def _block_files(root: Path, suffix: str) -> list[Path]:
    return sorted(root.rglob(f"parsl.*block-*{suffix}"))


def _first_failure(root: Path) -> float | None:
    """When the first block's job ended: LocalProvider writes its exit code to SCRIPT.ec."""
    ends = [p.stat().st_mtime for p in _block_files(root, ".ec")]
    return min(ends) if ends else None


def configure(s, name: str = "breaker") -> tuple[str, str]:
    """An endpoint NAME on bench.py's broker whose block's worker_init fails; (its id, a user URL)."""
    import yaml

    from gce.config.model import read_endpoint_id
    from gce.config.paths import endpoint_paths

    s.gce("configure", name, "--engine", "htex", "--max-workers", "2")
    paths = endpoint_paths(name)
    endpoint_id = read_endpoint_id(paths)
    ep_url, users = s.broker.provision(endpoint_id, users=[f"bencher-{name}"])
    config = yaml.safe_load(paths.config_file.read_text())
    config["broker"] = dict(config.get("broker") or {}, url=ep_url)
    engine = config["engine"]
    engine["provider"] = dict(engine.get("provider") or {"type": "LocalProvider"}, init_blocks=1, min_blocks=0,
                              max_blocks=1, worker_init=WORKER_INIT)
    paths.config_file.write_text(yaml.safe_dump(config))
    paths.config_file.chmod(0o600)  # it holds the endpoint's broker password
    return endpoint_id, users[f"bencher-{name}"]


def measure(s, tmp: Path) -> dict:
    """Both sides for WINDOW seconds: answer times and jobs submitted."""
    from gce.sdk import Executor

    endpoint_id, url = configure(s)
    peers = {}
    for i, (name, options) in enumerate(PEERS.items()):
        run_dir = tmp / f"peer{i}"
        run_dir.mkdir()
        code = PEER.format(run_dir=str(run_dir), worker_init=WORKER_INIT, window=WINDOW, options=options,
                           result=str(run_dir / "result.json"))
        peers[name] = (run_dir, subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL, cwd=run_dir, start_new_session=True))
    home = Path(s.env["GCE_HOME"])
    try:
        s.gce("start", "breaker", "--detach")
        started = time.time()
        answer, message, code = None, "", ""
        with Executor(endpoint_id=endpoint_id, broker_url=url) as ex:
            fut = ex.submit(noop)
            try:
                fut.result(timeout=WINDOW)
            except TimeoutError:
                pass
            except Exception as e:
                answer, message, code = time.time(), str(e), str(getattr(e, "code", ""))
        time.sleep(max(0.0, WINDOW - (time.time() - started)))
        ours = {"first_failure": _first_failure(home), "answer": answer, "message": message, "code": code,
                "jobs": len(_block_files(home, ".sh"))}
    finally:
        s.gce("stop", "breaker", check=False)
    got = {"gce": ours}
    for name, (run_dir, proc) in peers.items():
        try:
            proc.wait(timeout=WINDOW + 60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # its interchange and blocks, which it does not clean up
        got[name] = json.loads((run_dir / "result.json").read_text())
        got[name].update(first_failure=_first_failure(run_dir), jobs=len(_block_files(run_dir, ".sh")))
    return got


def run(only: set[str], rounds: int, s, ratio_row, rows: list) -> None:
    """Add the breaker rows when ONLY selects them, beside bench.py's setup S (one round: 120 s)."""
    if not only & set(NAMES):
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gce-bench-breaker-") as tmp:
        got = measure(s, Path(tmp))
    ours, theirs, silent = got["gce"], got["parsl defaults"], got["block_error_handler=False"]

    def after_failure(side: dict) -> str:
        if side["answer"] is None or side["first_failure"] is None:
            return f"none in {WINDOW:.0f} s"
        return f"{side['answer'] - side['first_failure']:.1f} s"

    answered = ours["code"] == "BLOCKS_FAILING"
    rows.append(("failing blocks: first failure to the submitter's answer (vs raw parsl DFK + HTEX, defaults)",
                 after_failure(ours), after_failure(theirs), "-", "answered", answered))
    rows.append(("failing blocks: first failure to the answer (vs raw parsl, block_error_handler=False)",
                 after_failure(ours), after_failure(silent), "-", "answered", answered))
    rows.append((f"failing blocks: batch jobs submitted in {WINDOW:.0f} s (vs raw parsl, defaults)", str(ours["jobs"]),
                 str(theirs["jobs"]), "-", "≤ 3", ours["jobs"] <= 3))
    rows.append((f"failing blocks: batch jobs submitted in {WINDOW:.0f} s (vs raw parsl, block_error_handler=False)",
                 str(ours["jobs"]), str(silent["jobs"]), "-", "≤ 3", ours["jobs"] <= 3))
    print(f"breaker: gce answered {ours['message'][:200]!r}", flush=True)
    for name in PEERS:
        print(f"breaker: raw parsl ({name}) answered {got[name].get('error')!r}", flush=True)


def main() -> int:
    """These rows alone, on a private broker as bench.py sets it up."""
    import tempfile

    import bench  # noqa: E402 - bench/ is the script's directory

    rows: list[bench.Row] = []
    with tempfile.TemporaryDirectory(prefix="gce-bench-breaker-") as tmp:
        s = bench.Setup(Path(tmp))
        try:
            run(set(NAMES), 1, s, None, rows)
        finally:
            s.close()
    return bench.print_rows(rows, "gce", "raw parsl")


if __name__ == "__main__":
    sys.exit(main())
