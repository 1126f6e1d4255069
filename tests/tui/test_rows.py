"""Each screen's rows from a fixed snapshot, the banner, and what Enter and s do on them."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from gce.config.paths import endpoint_paths
from gce.tui import rows
from gce.tui.app import MonitorApp
from gce.tui.collect import Snapshot
from gce.tui.detail import Detail
from gce.tui.table import LiveTable
from tests.tui import fixed


def _with_status(snap: Snapshot, **changes) -> Snapshot:
    view = snap.endpoints[0]
    return replace(snap, endpoints=(replace(view, status={**view.status, **changes}),) + snap.endpoints[1:])


def test_the_banner_names_a_broker_link_down_and_version_skew(tmp_path):
    snap = fixed.snapshot()
    assert rows.banner(snap) == []
    ueps = snap.endpoints[0].status["user_endpoints"]
    old = {**ueps[0], "engine": {**ueps[0]["engine"], "versions": {"gce": "0.0.9"}}}
    skewed = _with_status(snap, broker={"url": "amqps://b/gce", "connected": False, "last_error": "[red]refused"},
                          user_endpoints=[old, ueps[1]])
    assert rows.banner(skewed) == ["cluster: broker link down: [red]refused",
                                   "cluster: user endpoint alice/3f2a runs gce 0.0.9, the manager 0.1.0"]


def test_blocks_and_workers_rows(tmp_path):
    snap = fixed.snapshot()
    assert rows.block_rows(snap)[1] == ("cluster/alice/3f2a/1", (
        "cluster", "alice/3f2a", "1", "81240", "SlurmProvider", "pending", "PENDING", "1m00s", "-", "0", "Priority"))
    assert rows.worker_rows(snap) == [("cluster/alice/3f2a/a1b2c3", (
        "cluster", "alice/3f2a", "node01", "0", "1", "3", "simulate(alice@example.org, 42s)", "2.0s ago"))]


def _run(app: MonitorApp, test) -> None:
    async def main() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            await test(app, pilot)

    asyncio.run(main())


def test_enter_on_a_block_opens_its_script_and_output_literally(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    script, out = tmp_path / "block-0.submit", tmp_path / "block-0.stdout"
    script.write_text("#!/bin/bash\n#SBATCH --time=01:00:00\nprocess_worker_pool.py\n")
    out.write_text("".join(f"line {i}\n" for i in range(5000)) + "[bold]done[/] \x1b]0;pwned\x07\n")
    snap = fixed.snapshot()
    alice = snap.endpoints[0].status["user_endpoints"][0]
    block = {**alice["engine"]["block_list"][0], "submit_script": str(script), "stdout": str(out)}
    alice = {**alice, "engine": {**alice["engine"], "block_list": [block]}}
    snap = _with_status(snap, user_endpoints=[alice])
    app = MonitorApp({"cluster": endpoint_paths("cluster")}, fixed=snap)

    async def test(app, pilot):
        await pilot.press("3", "enter")
        detail = app.screen
        assert isinstance(detail, Detail)
        text = "\n".join(line.text for line in detail.query_one("#body").lines)
        assert "#SBATCH --time=01:00:00" in text and "[bold]done[/]" in text and "pwned" not in text
        assert "line 4999" in text and "line 0\n" not in text  # the tail of a long output
        assert "pending  PENDING  Priority" in text  # the transitions

    _run(app, test)


def test_s_sorts_by_the_next_column_and_keeps_the_sort_on_refresh(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    snap = fixed.snapshot()
    app = MonitorApp({}, fixed=snap)

    async def test(app, pilot):
        await pilot.press("5")
        table = app.query_one("#tasks-table", LiveTable)
        order = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert order == ["7d1c", "5b2e", "3a9f"]  # newest first
        await pilot.press("s")
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["3a9f", "5b2e", "7d1c"]
        app.show(snap)  # a refresh
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["3a9f", "5b2e", "7d1c"]

    _run(app, test)


def test_a_refresh_updates_cells_in_place_and_new_rows_land_where_they_belong(tmp_path, monkeypatch):
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    snap = fixed.snapshot()
    app = MonitorApp({}, fixed=snap)

    def order(table: LiveTable) -> list[str]:
        return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]

    async def test(app, pilot):
        await pilot.press("5", "j")
        table = app.query_one("#tasks-table", LiveTable)
        assert table.selected_key() == "cluster/5b2e"
        view = snap.endpoints[0]
        first = {**view.tasks[0], "state": "success", "ran_for": 3.0}
        newer = {**view.tasks[2], "task_id": "9c0d", "state": "received"}
        app.show(replace(snap, endpoints=(replace(view, tasks=(newer, first) + view.tasks[1:]),)))
        assert order(table) == ["9c0d", "7d1c", "5b2e", "3a9f"]  # the newest on top, as collected
        assert str(table.get_row("cluster/7d1c")[3]) == "success"
        assert table.selected_key() == "cluster/5b2e"  # the cursor stays on its task

    _run(app, test)


def test_a_multi_user_endpoint_s_idle_user_endpoint_says_when_it_stops():
    from gce.tui.rows import USER_ENDPOINTS, uep_rows
    from tests.tui.fixed import snapshot

    rows = dict(uep_rows(snapshot()))
    column = USER_ENDPOINTS.index("IDLE / STOPS IN")
    assert rows["cluster/alice/3f2a"][column] == "3.0s / 29m57s"
    assert rows["cluster/bob/9e01"][column] == "-"  # a UEP at work (idle_for unknown) has no stop coming


def test_the_sparkline_of_an_idle_endpoint_is_empty_not_a_full_bar():
    from gce.tui.rows import activity

    assert activity([(0.0, 0.0), (0.0, 0.0)]) == []
    assert activity([(3.0, 1.0), (0.0, 0.0)]) == [4.0, 0.0]
    assert activity(()) == []
