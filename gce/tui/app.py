"""gce monitor's screens: a tab per screen, refreshed by one thread worker running collect().

The worker is skipped while paused (p) or while a dialog hides the screens; it only posts its
snapshot back to the screens, which update their tables in place. Actions run in workers too,
so a manager that does not answer never freezes the screen.
"""

from __future__ import annotations

from typing import Any, Callable

from textual import work
from textual.worker import WorkerState, get_current_worker
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Footer, Header, Input, Sparkline, Static, TabbedContent, TabPane

from gce.config.paths import EndpointPaths
from gce.errors import GceError
from gce.tui import actions
from gce.tui.blocks import BlocksTable
from gce.tui.collect import Snapshot, collect
from gce.tui.confirm import Confirm
from gce.tui.detail import Detail
from gce.tui.endpoints import EndpointsTable
from gce.tui.help import Help
from gce.tui.log import LogView, read_new
from gce.tui.rows import activity, banner
from gce.tui.table import LiveTable
from gce.tui.tasks import TasksTable
from gce.tui.text import cell
from gce.tui.ueps import UepsTable
from gce.tui.workers import WorkersTable

SCREENS = (("endpoints", "Endpoints"), ("ueps", "User endpoints"), ("blocks", "Blocks"), ("workers", "Workers"),
           ("tasks", "Tasks"), ("log", "Log"))


class MonitorApp(App[None]):
    TITLE = "gce monitor"
    CSS = """
    #banner { background: $warning 30%; height: auto; display: none; }
    #banner.shown { display: block; }
    #rates { height: 2; margin: 0 1; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    TabPane { padding: 0; }
    """
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "push_screen('help')", "Help", key_display="?"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort", "Sort"),
        Binding("p", "pause", "Pause"),
        Binding("x", "stop", "Stop"),
        Binding("R", "restart", "Restart", show=False),
        Binding("escape", "go_back", "Back", show=False),
        *(Binding(str(i), f"show('{key}')", title, show=False) for i, (key, title) in enumerate(SCREENS, 1)),
    ]
    SCREENS = {"help": Help}

    def __init__(self, targets: dict[str, EndpointPaths], refresh: float = 2.0, fixed: Snapshot | None = None,
                 collector: Callable[..., Snapshot] = collect) -> None:
        super().__init__()
        self.targets = targets  # {label: paths} (gce.tui.where)
        self.interval = refresh
        self.fixed = fixed  # a given snapshot, shown and never refreshed
        self.collector = collector
        self.snapshot: Snapshot | None = None
        self.opened: str | None = None  # the endpoint Enter opened: the other screens show it alone
        self.paused = False
        self.text = ""

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        yield Static(id="banner")
        with TabbedContent(id="screens"):
            with TabPane("1 Endpoints", id="endpoints"):
                yield EndpointsTable(id="endpoints-table")
                yield Sparkline([], id="rates")
            with TabPane("2 User endpoints", id="ueps"):
                yield UepsTable(id="ueps-table")
            with TabPane("3 Blocks", id="blocks"):
                yield BlocksTable(id="blocks-table")
            with TabPane("4 Workers", id="workers"):
                yield WorkersTable(id="workers-table")
            with TabPane("5 Tasks", id="tasks"):
                yield TasksTable(id="tasks-table")
            with TabPane("6 Log", id="log"):
                yield LogView(id="log-view")
        yield Input(placeholder="filter: text the rows must contain (Enter keeps it, Esc clears it)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        if self.fixed is not None:
            self.show(self.fixed)
            return
        self.tick()
        self.set_interval(self.interval, self.tick)

    # -- refreshing --------------------------------------------------------------------
    def tick(self) -> None:
        if not self.is_running:  # an action's tick landing as the monitor closes
            return
        if self.paused or isinstance(self.screen, ModalScreen):
            return  # nothing on screen would change: the managers are not asked
        if any(w.group == "collect" and w.state is WorkerState.RUNNING for w in self.workers):
            return  # a manager slow to answer: the look under way ends within the refresh, and shows
        log = self.query_one(LogView)
        follow = None
        if self.active == "log" and self.snapshot is not None and self.snapshot.endpoints:
            view = self.snapshot.endpoint(self.opened or "") or self.snapshot.endpoints[0]
            if view.name in self.targets:
                follow = log.start(self.targets[view.name])
        if self.fixed is None:
            self.refresh_data(follow)
        elif follow is not None:
            log.write_new(follow[0], read_new(*follow))

    @work(thread=True, exclusive=True, group="collect")
    def refresh_data(self, follow: Any) -> None:
        snap = self.collector(self.targets, self.snapshot, timeout=self.interval)
        found = read_new(*follow) if follow else None
        self.call_from_thread(self.show, snap, follow[0] if follow else None, found)

    def show(self, snap: Snapshot, log_path: Any = None, found: Any = None) -> None:
        if not self.is_running:  # q was pressed while this look was under way: the screens are going
            return
        self.snapshot = snap
        if self.active != "log":  # the hidden screens' tables catch up when shown (their rows cost)
            table = self.query_one(f"#{self.active}-table", LiveTable)
            table.show(snap, None if isinstance(table, EndpointsTable) else self.opened, self.text)
        notes = banner(snap)
        shown = self.query_one("#banner", Static)
        shown.update(cell(" | ".join(notes)))
        shown.set_class(bool(notes), "shown")
        view = snap.endpoint(self.selected("endpoints") or "") or (snap.endpoints[0] if snap.endpoints else None)
        self.query_one(Sparkline).data = activity(view.rates if view else ())
        if found is not None:
            self.query_one(LogView).write_new(log_path, found)
        self.sub_title = " ".join(filter(None, [self.opened or "every endpoint", "(paused)" if self.paused else ""]))

    # -- moving around -------------------------------------------------------------------
    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    def selected(self, screen: str) -> str | None:
        return self.query_one(f"#{screen}-table", LiveTable).selected_key()

    def action_show(self, screen: str) -> None:
        self.query_one(TabbedContent).active = screen
        widget = self.query_one(LogView) if screen == "log" else self.query_one(f"#{screen}-table")
        widget.focus()
        if screen == "log":
            self.tick()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or ""
        self.query_one(f"#{pane}-table" if pane != "log" else "#log-view").focus()
        if self.snapshot is not None:
            self.show(self.snapshot)

    def on_data_table_row_selected(self, event: Any) -> None:
        """Enter: an endpoint opens its user endpoints, a user endpoint its blocks, a block its
        output, a worker's node its tasks, a task its error."""
        key = str(event.row_key.value)
        table = event.data_table.id
        if table == "endpoints-table":
            self.opened = key
            self.action_show("ueps")
        elif table == "ueps-table":
            self.opened = key.split("/", 1)[0]
            self.action_show("blocks")
        elif table == "workers-table":
            self.opened = key.split("/", 1)[0]
            self.action_show("tasks")
        elif table == "blocks-table":
            block = self.find_block(key)
            if block is not None:
                self.push_screen(Detail(f"block {key}", actions.block_sections(block)))
        elif table == "tasks-table":
            self.open_task(key)
        if self.snapshot is not None:
            self.show(self.snapshot)

    def action_go_back(self) -> None:
        if self.query_one("#filter", Input).has_class("shown"):
            self.close_filter(keep=False)
        elif self.opened is not None:
            self.opened = None
            self.action_show("endpoints")
            if self.snapshot is not None:
                self.show(self.snapshot)

    # -- filter, sort, pause -----------------------------------------------------------------
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text = event.value
        if self.snapshot is not None:
            self.show(self.snapshot)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.close_filter(keep=True)

    def close_filter(self, keep: bool) -> None:
        box = self.query_one("#filter", Input)
        if not keep:
            box.value = ""
        box.remove_class("shown")
        self.action_show(self.active)

    def action_sort(self) -> None:
        if self.active != "log":
            column = self.query_one(f"#{self.active}-table", LiveTable).cycle_sort()
            self.notify(f"sorted by {column}" if column else "unsorted", timeout=2)

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.notify("paused: p resumes" if self.paused else "resumed", timeout=2)
        if self.snapshot is not None:
            self.show(self.snapshot)

    # -- drilling in and acting ------------------------------------------------------------
    def find_block(self, key: str) -> dict[str, Any] | None:
        name, _, uep = key.partition("/")
        uep, _, block_id = uep.rpartition("/")
        view = self.snapshot.endpoint(name) if self.snapshot else None
        for u in (view.status or {}).get("user_endpoints") or [] if view else []:
            if u.get("key") == uep:
                blocks = (u.get("engine") or {}).get("block_list") or []
                return next((b for b in blocks if str(b.get("block_id")) == block_id), {"block_id": block_id})
        return None

    def open_task(self, key: str) -> None:
        name, _, task_id = key.partition("/")
        view = self.snapshot.endpoint(name) if self.snapshot else None
        row = next((t for t in view.tasks if t.get("task_id") == task_id), None) if view else None
        if row is not None and name in self.targets:
            self.load_task(name, row)

    @work(thread=True, exclusive=True, group="task")
    def load_task(self, name: str, row: dict[str, Any]) -> None:
        sections = actions.task_sections(self.targets[name], row)
        if not get_current_worker().is_cancelled:  # Enter pressed again meanwhile: that one opens
            self.call_from_thread(self.push_screen, Detail(f"task {row.get('task_id')} of {name}", sections))

    def action_stop(self) -> None:
        """x: stop what the cursor is on (an endpoint, a user endpoint), or cancel its block."""
        key = self.selected(self.active) if self.active in ("endpoints", "ueps", "blocks") else None
        if key is None:
            self.notify("x acts on a row of Endpoints, User endpoints or Blocks", severity="warning")
            return
        name, _, rest = key.partition("/")
        if name not in self.targets:
            return
        paths = self.targets[name]
        if self.active == "endpoints":
            self.ask(f"Stop endpoint {key}?", actions.stop_endpoint, paths)
        elif self.active == "ueps":
            self.ask(f"Stop user endpoint {rest} of {name}?", actions.stop_uep, paths, rest)
        else:
            uep, _, block_id = rest.rpartition("/")
            self.ask(f"Cancel block {block_id} of {uep} ({name})?", actions.cancel_block, paths, uep, block_id)

    def action_restart(self) -> None:
        key = self.selected("endpoints") if self.active == "endpoints" else None
        if key is not None and key in self.targets:
            self.ask(f"Restart endpoint {key}?", actions.restart_endpoint, self.targets[key])

    def ask(self, question: str, act: Callable[..., str], *args: Any) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.act(act, *args)

        self.push_screen(Confirm(question), answered)

    @work(thread=True, group="act")
    def act(self, act: Callable[..., str], *args: Any) -> None:
        try:
            said, severity = act(*args), "information"
        except (GceError, OSError) as e:
            said, severity = f"error: {e}", "error"  # a refusal is the manager's own sentence
        self.call_from_thread(self.notify, said, severity=severity, timeout=8)
        self.call_from_thread(self.tick)
