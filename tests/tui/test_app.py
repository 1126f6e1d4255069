"""gce monitor's screens driven by textual's Pilot against a real endpoint: navigation, drill-down,
filter, pause, a failed task's error, and an action confirmed."""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Any, Callable

from gce.config.paths import endpoint_paths
from gce.tui.app import MonitorApp
from gce.tui.detail import Detail
from gce.tui.table import LiveTable
from tests.endpoint import Endpoint
from tests.tui.conftest import HOSTILE_NAME

SIZE = (120, 36)


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError("the screen did not get there")


def table(app: MonitorApp, screen: str) -> LiveTable:
    return app.query_one(f"#{screen}-table", LiveTable)


def keys(app: MonitorApp, screen: str) -> list[str]:
    return [str(k.value) for k in table(app, screen).rows]


def cells(app: MonitorApp, screen: str, key: str) -> list[str]:
    return [str(c) for c in table(app, screen).get_row(key)]


def run(test: Callable[[MonitorApp, Any], Any], names=("ep",), refresh: float = 0.3) -> None:
    async def main() -> None:
        app = MonitorApp({n: endpoint_paths(n) for n in names}, refresh)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and keys(app, "endpoints"))
            await test(app, pilot)

    asyncio.run(main())


def test_every_screen_shows_the_endpoint_and_keys_move_between_them(live):
    async def test(app, pilot):
        row = cells(app, "endpoints", "ep")
        assert row[:2] == ["ep", "running"] and "connected" in row
        await pilot.press("2")
        assert app.active == "ueps" and app.focused is table(app, "ueps")
        assert keys(app, "ueps") == ["ep/default"] and cells(app, "ueps", "ep/default")[5] == "running"
        await pilot.press("4")
        assert app.active == "workers" and keys(app, "workers")
        await pilot.press("5")
        await until(pilot, lambda: len(keys(app, "tasks")) == 2)
        shown = sorted((cells(app, "tasks", k)[3], cells(app, "tasks", k)[1]) for k in keys(app, "tasks"))
        assert shown == [("failed", HOSTILE_NAME), ("success", "square")]
        tasks = table(app, "tasks")
        first = tasks.cursor_row
        await pilot.press("j")
        assert tasks.cursor_row == first + 1
        await pilot.press("k")
        assert tasks.cursor_row == first
        await pilot.press("6")
        log = app.query_one("#log-view")

        def texts() -> list[str]:
            return [line.text for line in log.lines]

        await until(pilot, lambda: any(t.startswith("manager: ") for t in texts()))
        # the user endpoint's own log, merged in time order with the manager's
        await until(pilot, lambda: any(t.startswith("uep ") for t in texts()))
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "Help"
        await pilot.press("escape")
        assert app.active == "log"

    run(test)


def test_enter_opens_an_endpoint_and_esc_comes_back(live):
    async def test(app, pilot):
        await pilot.press("enter")
        assert app.active == "ueps" and app.opened == "ep" and "ep" in app.sub_title
        await pilot.press("escape")
        assert app.active == "endpoints" and app.opened is None

    run(test)


def test_the_filter_keeps_the_rows_with_its_text_and_esc_clears_it(live):
    async def test(app, pilot):
        await pilot.press("5")
        await until(pilot, lambda: len(keys(app, "tasks")) == 2)
        await pilot.press("slash", *"TASK_EXC", "enter")
        assert len(keys(app, "tasks")) == 1 and cells(app, "tasks", keys(app, "tasks")[0])[3] == "failed"
        await pilot.pause(1.0)  # refreshes keep the filter
        assert len(keys(app, "tasks")) == 1
        await pilot.press("slash", "escape")
        assert len(keys(app, "tasks")) == 2

    run(test)


def test_pause_stops_the_refresh_until_resumed(live):
    async def test(app, pilot):
        await pilot.press("p")
        # a refresh under way when p was pressed lands (its worker shows it before it finishes);
        # paused, no tick starts another
        await until(pilot, lambda: not any(w.group == "collect" and not w.is_finished for w in app.workers))
        taken = app.snapshot.taken_at
        await pilot.pause(1.0)
        assert app.snapshot.taken_at == taken and "paused" in app.sub_title
        await pilot.press("p")
        await until(pilot, lambda: app.snapshot.taken_at > taken)

    run(test)


def test_a_failed_tasks_error_opens_and_shows_its_text_literally(live):
    async def test(app, pilot):
        await pilot.press("5")
        await until(pilot, lambda: len(keys(app, "tasks")) == 2)
        await pilot.press("slash", *"failed", "enter", "enter")
        detail = await until(pilot, lambda: isinstance(app.screen, Detail) and app.screen)
        text = "\n".join(line.text for line in detail.query_one("#body").lines)
        assert "ValueError" in text and "[bold red]x[/]" in text and "\x1b" not in text and "pwned" not in text
        assert f"failed ({HOSTILE_NAME})" in text  # the function's name, as the SDK sent it
        await pilot.press("escape")
        assert not isinstance(app.screen, Detail)

    run(test)


def test_stopping_an_endpoint_asks_first_then_shows_it_stopped(live):
    other = Endpoint(live.broker, live.home, name="other")
    other.start()
    try:
        async def test(app, pilot):
            await until(pilot, lambda: cells(app, "endpoints", "other")[1] == "running")
            table(app, "endpoints").move_cursor(row=table(app, "endpoints").get_row_index("other"))
            await pilot.press("x")
            assert type(app.screen).__name__ == "Confirm"
            await pilot.press("n")
            await pilot.pause(0.5)
            assert cells(app, "endpoints", "other")[1] == "running"
            await pilot.press("x", "y")
            await until(pilot, lambda: cells(app, "endpoints", "other")[1] == "stopped", timeout=30)
            assert cells(app, "endpoints", "ep")[1] == "running"

        run(test, names=("ep", "other"))
    finally:
        other.stop()
        shutil.rmtree(other.paths.config_dir)


def toasts(app: MonitorApp) -> str:
    """What the app told the user in notifications (textual 8 keeps them in App._notifications)."""
    return "\n".join(n.message for n in app._notifications)


def test_a_refused_action_shows_the_managers_sentence(live):
    from gce.tui import actions

    async def test(app, pilot):
        app.act(actions.cancel_block, live.paths, "nobody", "7")
        said = await until(pilot, lambda: "error:" in toasts(app) and toasts(app))
        assert "error: endpoint 'ep' did not cancel block 7 of nobody: " in said, said

    run(test)


def test_stopping_a_user_endpoint_asks_first_then_it_goes(live):
    async def test(app, pilot):
        await pilot.press("2")
        await until(pilot, lambda: keys(app, "ueps") == ["ep/default"])
        await pilot.press("x")
        assert type(app.screen).__name__ == "Confirm"
        await pilot.press("y")
        said = await until(pilot, lambda: "stopping" in toasts(app) and toasts(app))
        assert "user endpoint default of ep is stopping" in said
        await until(pilot, lambda: not keys(app, "ueps") or cells(app, "ueps", "ep/default")[5] != "running", 30)

    run(test)


def test_restarting_an_endpoint_asks_first_then_it_runs_again(live):
    other = Endpoint(live.broker, live.home, name="again")
    first = other.start()["pid"]
    try:
        async def test(app, pilot):
            await until(pilot, lambda: cells(app, "endpoints", "again")[1] == "running")
            table(app, "endpoints").move_cursor(row=table(app, "endpoints").get_row_index("again"))
            await pilot.press("R")
            assert type(app.screen).__name__ == "Confirm"
            await pilot.press("y")
            said = await until(pilot, lambda: "runs again" in toasts(app) and toasts(app), timeout=60)
            assert f"endpoint again runs again (pid {other.manager_pid()})" in said and other.manager_pid() != first

        run(test, names=("ep", "again"))
    finally:
        other.stop()
        shutil.rmtree(other.paths.config_dir)


def test_a_manager_that_does_not_answer_never_freezes_the_screen(live):
    import socket

    from tests.commands.helpers import running

    hung = endpoint_paths("hung")
    hung.config_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(hung.control_socket))
    listener.listen(16)  # takes connections, never answers

    async def test(app, pilot):
        await until(pilot, lambda: cells(app, "endpoints", "hung")[1].startswith("not answering since "))
        seen = app.snapshot.taken_at
        await until(pilot, lambda: app.snapshot.taken_at > seen)  # refreshes go on
        assert cells(app, "endpoints", "ep")[1] == "running"
        await pilot.press("5")
        assert keys(app, "tasks")  # and the screen answers keys

    try:
        with running(hung):
            run(test, names=("ep", "hung"))
    finally:
        listener.close()
        shutil.rmtree(hung.config_dir)


def test_a_refresh_that_lands_as_the_monitor_closes_is_dropped(live):
    """A look at the managers still under way when q is pressed hands its snapshot over while the
    screens are being taken down: it must be dropped, not end the monitor with a traceback."""
    closed: list[MonitorApp] = []

    async def test(app, pilot):
        closed.append(app)

    run(test)
    [app] = closed
    assert app.snapshot is not None
    app.show(app.snapshot)  # no widget is left to show it on
