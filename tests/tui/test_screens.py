"""Screenshots of every screen at 80x24 and 160x48, from a fixed Snapshot, compared with the ones
accepted before (pytest-textual-snapshot; `pytest --snapshot-update` accepts new ones)."""

from __future__ import annotations

import pytest

from gce.config.paths import endpoint_paths
from gce.tui.app import MonitorApp
from tests.tui import fixed

def targets():
    """The fixed snapshot's endpoints, configured nowhere (under the test's GCE_HOME): asked, they do not run."""
    return {name: endpoint_paths(name) for name in ("cluster", "laptop")}


SCREENS = {"endpoints": "1", "ueps": "2", "blocks": "3", "workers": "4", "tasks": "5", "log": "6"}


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("GCE_HOME", str(tmp_path))  # no endpoint of this machine answers for "cluster"
    log = endpoint_paths("cluster").log_file
    log.parent.mkdir(parents=True)
    log.write_text(fixed.LOG)
    return MonitorApp(targets(), fixed=fixed.snapshot())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, app, screen, size):
    assert snap_compare(app, press=[SCREENS[screen]], terminal_size=size)


def test_a_failed_task_opened(snap_compare, app):
    async def open_it(pilot):
        await pilot.press("5", "slash", *"failed", "enter", "enter")
        await pilot.pause(0.5)

    assert snap_compare(app, run_before=open_it, terminal_size=(80, 24))


def test_the_readmes_screenshot_is_this_gces(app, tmp_path):
    """docs/gce-monitor.svg is made here: rewritten (and this test fails once) when the screens change."""
    import asyncio
    from pathlib import Path

    async def shoot() -> str:
        async with app.run_test(size=(110, 24)) as pilot:
            await pilot.pause()
            return app.export_screenshot(title="gce monitor")

    svg = asyncio.run(shoot())
    docs = Path(__file__).resolve().parents[2] / "docs" / "gce-monitor.svg"
    was = docs.read_text() if docs.exists() else ""
    if was != svg:
        docs.parent.mkdir(exist_ok=True)
        docs.write_text(svg)
    assert was == svg, f"{docs} was out of date and is rewritten: commit it"


def test_no_color_shows_the_screens_without_colours(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("GCE_HOME", str(tmp_path))
    log = endpoint_paths("cluster").log_file
    log.parent.mkdir(parents=True)
    log.write_text(fixed.LOG)
    app = MonitorApp(targets(), fixed=fixed.snapshot())
    assert app.no_color
    assert snap_compare(app, press=["1"], terminal_size=(80, 24))
