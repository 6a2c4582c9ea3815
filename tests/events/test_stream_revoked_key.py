"""A live stream ends once its API key is revoked (checked every `CREDENTIAL_CHECK_S`),
rather than streaming the tenant's events to a revoked key until its
`events_stream_duration_max_s` (five minutes by default); the client's reconnection is then
refused with 401."""

from __future__ import annotations

import threading

import pytest

from billfold.events import router
from billfold.identity.types import Scope
from events.events_api_support import auth, client
from identity.identity_support import bootstrap_tenant, create_key

STREAM_S = 120.0
"""Longer than the test may take: the stream ends by the check, never by its limit."""
ENDED_WAIT_S = 30.0


def test_a_stream_ends_once_its_key_is_revoked(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router, "CREDENTIAL_CHECK_S", 0.1)
    tenant = bootstrap_tenant(database_url, "Streams").tenant.id
    admin = create_key(database_url, tenant_id=tenant, scopes=[Scope.TENANT_ADMIN]).secret
    watcher = create_key(database_url, tenant_id=tenant, scopes=[Scope.EVENTS_READ])
    key_id = f"key_{watcher.api_key.id.hex}"
    with client(database_url, events_stream_duration_max_s=STREAM_S) as api:
        ended = threading.Event()
        received: list[bytes] = []

        def watch() -> None:
            with api.stream("GET", "/v1/events/stream", headers=auth(watcher.secret)) as stream:
                assert stream.status_code == 200
                for chunk in stream.iter_bytes():
                    received.append(chunk)
            ended.set()

        reader = threading.Thread(target=watch, daemon=True)
        reader.start()
        still = api.get("/v1/events", headers=auth(watcher.secret))
        assert still.status_code == 200  # the key works, and the stream stays open
        assert not ended.wait(1.0)
        revoked = api.post(f"/v1/api-keys/{key_id}/revoke", headers=auth(admin))
        assert revoked.status_code == 200, revoked.text
        assert ended.wait(ENDED_WAIT_S), "the stream went on after its key was revoked"
        reader.join()
        assert b"".join(received).startswith(b"retry: 1000")
        refused = api.get("/v1/events/stream", headers=auth(watcher.secret))
        assert refused.status_code == 401
