"""The manager's periodic chores, on its loop: stop idle user endpoints, restart those whose blocks
kept failing once their config changed, publish the status,
refresh the state file (other hosts sharing the directory see the endpoint is alive), and
give memory back once the endpoint is idle."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from gce.daemon import pidfile

if TYPE_CHECKING:
    from gce.daemon.manager import Manager

IDLE_TRIM_SECONDS = 10.0  # how soon after the last task an idle manager releases memory


async def housekeeping(m: Manager) -> None:
    trimmed_at, published, refreshed = -1, time.monotonic(), time.monotonic()
    period = min(m.config.status_period, IDLE_TRIM_SECONDS)
    if m.config.multi_user:
        period = min(period, max(0.5, min(5.0, m.config.idle_timeout / 2)))
    while True:
        await asyncio.sleep(period)
        m.stop_idle()
        m.replace_changed()
        m.audit.check()  # lines that waited for a full or unwritable disk
        if time.monotonic() - published >= m.config.status_period - 0.01:
            m.publish_status()
            published = time.monotonic()
        if time.monotonic() - refreshed >= pidfile.REFRESH_SECONDS:
            pidfile.refresh_state(m.paths)
            refreshed = time.monotonic()
        handled = m.counts["received"] + m.counts["malformed"]
        if handled != trimmed_at and not m.spool.entries:
            trimmed_at = handled
            release_memory()


def release_memory() -> None:
    """Give the heap's free pages back to the kernel once the endpoint is idle.

    After large payloads glibc raises its mmap threshold (up to 32 MiB), so later buffers
    live on the heap and their pages stay resident after being freed; malloc_trim(3)
    returns them. Nothing to do on other C libraries.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
