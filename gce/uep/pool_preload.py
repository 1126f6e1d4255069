"""Imported by the standard fork server of gce-worker-pool (where the pool cannot fork one
from itself) before it forks the pool's processes: parsl, once, without typeguard's
instrumentation (see gce.uep.worker_pool)."""

from gce.uep.worker_pool import import_parsl

import_parsl()
