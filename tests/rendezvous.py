"""Tasks that wait for the test, or for each other, on files, whatever a busy machine does to
their timing; no comparison of clocks. A task held on a gate runs until the test creates it
(``wait_for``); tasks that must run at the same time meet: each touches its own marker, then waits
for the other's (``meet``). Imports are inside, so that they run as source too (inspect.getsource),
and tests/conftest.py sends this module by value, as a test module's functions are."""


def wait_for(path: str, timeout: float, interval: float = 0.05) -> bool:
    """Whether the file PATH exists, waited for at most TIMEOUT seconds."""
    import os
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(interval)
    return os.path.exists(path)


def meet(mine: str, other: str, timeout: float = 60) -> bool:
    """True only if the other task touched OTHER while this one ran."""
    open(mine, "w").close()
    return wait_for(other, timeout, 0.01)
