"""``python -m gce.uep.interchange``: parsl's HTEX interchange, parsl imported without
typeguard's instrumentation (see gce.uep.worker_pool); its config arrives on stdin.

It also answers gce's MANAGER_DETAIL command (gce.uep.parsl_compat.teach_manager_detail): which
host each worker pool runs on, its last heartbeat and the tasks it holds, for the engine's status;
and it hands a task with a time limit only to a worker pool whose block outlives it (gce.uep.placement).
Should parsl's module have changed, it runs as parsl wrote it, without that command.
"""

from __future__ import annotations

import importlib
import pickle
import runpy
import sys

from gce.uep.parsl_compat import INTERCHANGE, teach_manager_detail
from gce.uep.placement import teach_placement
from gce.uep.worker_pool import import_parsl

if __name__ == "__main__":
    import_parsl()
    module = importlib.import_module(INTERCHANGE)
    if teach_manager_detail(module):
        teach_placement(module)  # else tasks are placed as parsl places them
        from parsl.utils import setproctitle

        setproctitle("parsl: HTEX interchange")
        module.Interchange(**pickle.load(sys.stdin.buffer)).start()
    else:
        runpy.run_module(INTERCHANGE, run_name="__main__", alter_sys=True)
