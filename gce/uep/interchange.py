"""``python -m gce.uep.interchange``: parsl's HTEX interchange, parsl imported without
typeguard's instrumentation (see gce.uep.worker_pool); its config arrives on stdin."""

from __future__ import annotations

import runpy

from gce.uep.worker_pool import import_parsl

if __name__ == "__main__":
    import_parsl()
    runpy.run_module("parsl.executors.high_throughput.interchange", run_name="__main__", alter_sys=True)
