"""Completing a future that something else may have completed first."""

from __future__ import annotations

from concurrent.futures import Future, InvalidStateError
from typing import Any


def settle(future: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Complete FUTURE with RESULT, or with EXC when one is given, unless it is done already
    (cancelled by a shutdown, or answered first by a breaker): the first answer stands."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
