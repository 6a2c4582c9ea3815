"""A webhook endpoint's `event_types` filter names types Billfold emits. Only the shape was
checked: `com.billfold.trnasfer.posted.v1` made an endpoint (201) that would never receive
anything. It is a 422 `invalid_event_filter` naming the type now, on create and on PATCH,
and every type the code emits is still taken."""

from __future__ import annotations

from billfold.events.types import EVENT_TYPES
from events.events_api_support import auth, client, keys
from ledger.ledger_api_support import assert_problem

MISSPELT = "com.billfold.trnasfer.posted.v1"
TARGET = "http://127.0.0.1:9/hooks"


def test_a_misspelt_type_is_refused_on_create_and_nothing_is_made(database_url: str) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url, embedded_worker=False) as api:
        refused = api.post(
            "/v1/webhook-endpoints",
            json={"url": TARGET, "event_types": ["com.billfold.transfer.pending.v1", MISSPELT]},
            headers=auth(full),
        )
        problem = assert_problem(refused, 422, "invalid_event_filter")
        assert MISSPELT in problem["detail"]
        assert "com.billfold.transfer.posted.v1" in problem["detail"]  # the likely one
        assert problem["unknown_event_types"] == [MISSPELT]
        unknown = ["com.billfold.payment.settled.v1", "com.billfold.transfer.posted.v2"]
        both = api.post(
            "/v1/webhook-endpoints",
            json={"url": TARGET, "event_types": unknown},
            headers=auth(full),
        )
        assert assert_problem(both, 422, "invalid_event_filter")["unknown_event_types"] == unknown
        nope = api.post(
            "/v1/webhook-endpoints",
            json={"url": TARGET, "event_types": ["nope"]},
            headers=auth(full),
        )
        assert_problem(nope, 422, "invalid_event_filter")
        assert api.get("/v1/webhook-endpoints", headers=auth(reader)).json()["items"] == []


def test_a_misspelt_type_is_refused_on_patch_and_changes_nothing(database_url: str) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url, embedded_worker=False) as api:
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": TARGET, "event_types": ["com.billfold.transfer.posted.v1"]},
            headers=auth(full),
        ).json()
        path = f"/v1/webhook-endpoints/{created['id']}"
        refused = api.patch(
            path,
            json={"event_types": [MISSPELT], "description": "changed"},
            headers=auth(full),
        )
        problem = assert_problem(refused, 422, "invalid_event_filter")
        assert MISSPELT in problem["detail"] and problem["unknown_event_types"] == [MISSPELT]
        shown = api.get(path, headers=auth(reader)).json()
        assert shown["event_types"] == ["com.billfold.transfer.posted.v1"]
        assert (shown["description"], shown["updated_at"]) == ("", created["updated_at"])
        changed = api.patch(
            path, json={"event_types": ["com.billfold.payment.captured.v1"]}, headers=auth(full)
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["event_types"] == ["com.billfold.payment.captured.v1"]


def test_every_type_billfold_emits_is_taken(database_url: str) -> None:
    """All of the catalogue at once (transfers, every payment state, disputes, identity,
    webhook endpoints, risk): `test_event_catalogue` checks it holds every emitted type."""
    full, _, _ = keys(database_url)
    everything = sorted(EVENT_TYPES)
    with client(database_url, embedded_worker=False) as api:
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": TARGET, "event_types": everything[::-1]},
            headers=auth(full),
        )
        assert created.status_code == 201, created.text
        assert created.json()["event_types"] == everything
        path = f"/v1/webhook-endpoints/{created.json()['id']}"
        for event_type in everything:
            one = api.patch(path, json={"event_types": [event_type]}, headers=auth(full))
            assert one.status_code == 200, one.text
        document = api.get("/openapi.json").json()
        for model in ("EndpointCreateRequest", "EndpointUpdateRequest"):
            field = document["components"]["schemas"][model]["properties"]["event_types"]
            assert field["items"] == {"type": "string", "enum": everything}, model


def test_reading_events_of_a_type_billfold_never_emits_is_a_422_not_an_empty_page(
    database_url: str,
) -> None:
    """`GET /v1/events?type=` checked only the type's shape, so a misspelt type listed
    nothing (200, no items): indistinguishable from "no such events yet". It is refused
    as an endpoint's filter is, naming the type Billfold does emit."""
    _, reader, _ = keys(database_url)
    with client(database_url) as api:
        refused = api.get(f"/v1/events?type={MISSPELT}", headers=auth(reader))
        problem = assert_problem(refused, 422, "invalid_event_filter")
        assert problem["unknown_event_types"] == [MISSPELT]
        assert "com.billfold.transfer.posted.v1" in problem["detail"]
        for event_type in sorted(EVENT_TYPES):
            listed = api.get("/v1/events", params={"type": event_type}, headers=auth(reader))
            assert listed.status_code == 200, event_type
