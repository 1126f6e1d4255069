"""Tasks that must run at the same time meet: each touches its own marker, then waits for the
other's. True only if both were running at once, whatever a busy machine does to their timing;
no comparison of clocks. Its imports are inside, so that it runs as source too (inspect.getsource),
and tests/conftest.py sends it by value, as a test module's functions are."""


def meet(mine: str, other: str, timeout: float = 60) -> bool:
    import os
    import time

    open(mine, "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(other) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(other)
