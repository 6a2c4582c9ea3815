"""A live stream's polls read in deferred transactions on SQLite, as every other GET route
does (README, "SQLite has one writer"): each poll used to begin `BEGIN IMMEDIATE`, so every
open stream queued for the one write lock twice a second, behind each write, and a write
held longer than the 30 s busy timeout ended the stream with `database is locked`.

SQLite only: PostgreSQL has no database-wide write lock to wait for."""

from __future__ import annotations

import pytest

from events.events_api_support import auth, client, keys, post_transfer, wait_for
from sqlite_support import write_lock_held


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_stream_sends_its_events_while_another_connection_holds_the_write_lock(
    database_url: str,
) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url) as api:
        transfer_id = post_transfer(api, full)
        wait_for(
            lambda: any(
                e["subject"] == transfer_id
                for e in api.get("/v1/events", headers=auth(reader)).json()["items"]
            )
        )
        with write_lock_held(database_url):  # a long write elsewhere
            response = api.get(f"/v1/events/stream?aggregate={transfer_id}", headers=auth(reader))
    assert response.status_code == 200
    blocks = [b for b in response.text.split("\n\n") if b.startswith("id:")]
    assert len(blocks) == 1 and f'"subject":"{transfer_id}"' in blocks[0]
