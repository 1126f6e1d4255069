"""Which endpoints gce monitor watches: NAME, this account's, and for root the users' personal ones."""

from __future__ import annotations

from gce.tui.collect import collect
from gce.tui.where import personal, targets


def test_a_users_personal_endpoint_is_found_and_watched_where_its_owner_runs_it(live, tmp_path):
    account = tmp_path / "someone"
    account.mkdir()
    (account / ".gce").symlink_to(live.home)  # the endpoint's files, as under a user's home
    (live.home / "not a name!").mkdir()
    (live.home / "not a name!" / "config.yaml").write_text("")
    found = targets(None, accounts=[("someone", 4321, account), ("nobody", 4322, tmp_path / "nonexistent")])
    assert "ep" in found and "someone:ep" in found and not any("not a name" in k for k in found)
    assert found["someone:ep"].control_socket.resolve() == live.paths.control_socket.resolve()
    snap = collect({"someone:ep": found["someone:ep"]}, timeout=2)
    (view,) = snap.endpoints
    assert view.state == "running" and view.status["endpoint_id"] == live.endpoint_id


def test_name_alone_is_watched_and_an_unreadable_home_shows_nothing(live, tmp_path):
    assert list(targets("ep")) == ["ep"]
    assert personal(4321, tmp_path / "nonexistent") == []
