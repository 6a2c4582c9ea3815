"""A quiet live stream sends its keep-alive comment every `HEARTBEAT_S` (the SDK's README:
"the server's 15 s keep-alive") and ends at `events_stream_duration_max_s`, whatever the
poll interval: the stream used to sleep a whole `events_stream_poll_interval_s` (up to
30 s) between looks, so with a long one a proxy's idle timeout could cut it before its
keep-alive came, and it outlived its limit (and a revoked key) by up to that interval."""

from __future__ import annotations

import time

import pytest

from billfold.events import router
from events.events_api_support import auth, client, keys

HEARTBEAT_S = 0.2
POLL_S = 5.0
STREAM_S = 1.5


def test_a_quiet_stream_keeps_alive_and_ends_on_time_between_slow_polls(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router, "HEARTBEAT_S", HEARTBEAT_S)
    _, reader, _ = keys(database_url)
    settings = {"events_stream_poll_interval_s": POLL_S, "events_stream_duration_max_s": STREAM_S}
    with client(database_url, **settings) as api:
        started = time.monotonic()
        response = api.get(f"/v1/events/stream?aggregate=pay_{'0' * 32}", headers=auth(reader))
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.text.count(": keep-alive\n\n") >= STREAM_S / HEARTBEAT_S - 2
    assert STREAM_S <= elapsed < POLL_S
