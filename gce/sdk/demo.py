"""A tour of gce in four tasks: ``python -m gce.sdk.demo ENDPOINT_ID [--broker-url URL]``.

Each step is what you would write in your own script; read the functions below top to
bottom. The exit status is 0 when every check passed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed
from typing import Callable

from gce.sdk import Client, Executor, SdkError

# --- the functions that run on the endpoint --------------------------------------------


def hello_world() -> str:
    import platform
    import socket

    return f"Hello from {socket.gethostname()} (Python {platform.python_version()})"


def jittery_multiply(a: int, b: int) -> int:
    import random
    import time

    time.sleep(random.uniform(0, 0.05))  # so results finish out of order
    return a * b


def count_in_circle(points: int) -> int:
    """How many of POINTS random points in the unit square fall inside the quarter circle."""
    import random

    rng = random.Random()  # seeded from os.urandom: every task gets its own stream
    return sum(1 for _ in range(points) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def divide(a: float, b: float) -> float:
    return a / b


# --- the tour ----------------------------------------------------------------------------


def step_hello(ex: Executor, timeout: float) -> bool:
    greeting = ex.submit(hello_world).result(timeout=timeout)
    print(f"   {greeting}")
    return greeting.startswith("Hello from ")


def step_multiply(ex: Executor, timeout: float) -> bool:
    pairs: dict[Future, tuple[int, int]] = {ex.submit(jittery_multiply, a, a + 3): (a, a + 3) for a in range(100)}
    wrong, order = [], []
    for fut in as_completed(pairs, timeout=timeout):
        a, b = pairs[fut]
        order.append((a, b, fut.result()))
        if fut.result() != a * b:
            wrong.append(f"{a} × {b} gave {fut.result()}")
    print("   first to finish: " + ", ".join(f"{a} × {b} = {p}" for a, b, p in order[:3]))
    print("   last to finish:  " + ", ".join(f"{a} × {b} = {p}" for a, b, p in order[-2:]))
    print(f"   {100 - len(wrong)}/100 products correct" + (f"; wrong: {'; '.join(wrong[:5])}" if wrong else ""))
    return not wrong


def step_pi(ex: Executor, timeout: float, tasks: int, points: int) -> bool:
    futures = [ex.submit(count_in_circle, points) for _ in range(tasks)]
    inside = sum(f.result(timeout=timeout) for f in futures)
    estimate = 4.0 * inside / (tasks * points)
    error = estimate - math.pi
    # One standard deviation of the estimate is sqrt(pi * (4 - pi) / n); accept 6 of them.
    sigma = math.sqrt(math.pi * (4 - math.pi) / (tasks * points))
    print(f"   {tasks:,} tasks × {points:,} points: pi ≈ {estimate:.6f}"
          f" (error {error:+.6f}, {6 * sigma:.6f} allowed)")
    return abs(error) <= 6 * sigma


def step_traceback(ex: Executor, timeout: float) -> bool:
    try:
        ex.submit(divide, 1, 0).result(timeout=timeout)
    except ZeroDivisionError as e:  # the endpoint's exception, re-raised here with its own type
        print(f"   caught {type(e).__name__}: {e}; the remote traceback:")
        text = getattr(e, "remote_traceback", "")
        print("\n".join("     " + line for line in text.rstrip().splitlines()))
        return "in divide" in text
    print("   divide(1, 0) did not raise")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gce.sdk.demo", description=__doc__.splitlines()[0])
    parser.add_argument("endpoint_id", help="the endpoint to run on (see 'gce list' on the endpoint's host)")
    parser.add_argument("--broker-url", help="amqp://USER:PASSWORD@HOST/VHOST (default: $GCE_BROKER_URL, "
                        "then broker_url in ~/.gce/sdk.yaml)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each step (default 300)")
    parser.add_argument("--pi-tasks", type=int, default=1000, help=argparse.SUPPRESS)
    parser.add_argument("--pi-points", type=int, default=10_000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Imported modules are pickled by reference; send the demo's functions by value like a script's.
    if __name__ != "__main__":
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        status = Client(args.broker_url).get_endpoint_status(args.endpoint_id)
        why = status.get("reason") or f"last report {status.get('age_seconds', 0):.0f} s ago"
        print(f"endpoint {args.endpoint_id}: {status['status']} ({why})")
        with Executor(endpoint_id=args.endpoint_id, broker_url=args.broker_url) as ex:
            steps: list[tuple[str, Callable[[], bool]]] = [
                ("hello world", lambda: step_hello(ex, args.timeout)),
                ("100 jittery multiplications, gathered with as_completed", lambda: step_multiply(ex, args.timeout)),
                ("pi by Monte Carlo", lambda: step_pi(ex, args.timeout, args.pi_tasks, args.pi_points)),
                ("a function that raises", lambda: step_traceback(ex, args.timeout)),
            ]
            failed = 0
            for n, (title, run) in enumerate(steps, 1):
                print(f"\n{n}. {title}")
                start = time.monotonic()
                try:
                    ok = run()
                except (SdkError, FutureTimeout) as e:
                    print(f"   error: {type(e).__name__}: {e}")
                    ok = False
                print(f"   {'ok' if ok else 'FAILED'} in {time.monotonic() - start:.1f} s")
                failed += not ok
    except SdkError as e:  # cannot connect, no broker URL, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\n{len(steps) - failed}/{len(steps)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
