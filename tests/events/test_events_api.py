"""The events HTTP API: webhook endpoints (secret shown once), the delivery log, the event
list, replays and live streams, scoped to the caller's tenant and mode."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from billfold.identity.types import Mode
from events.events_api_support import EVERYTHING, auth, client, keys, post_transfer, wait_for
from events.events_support import Receiver
from identity.identity_support import bootstrap_tenant, create_key
from ledger.ledger_api_support import assert_problem


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def test_an_endpoint_receives_a_transfer_event_and_logs_the_delivery(
    database_url: str, receiver: Receiver
) -> None:
    full, reader, _ = keys(database_url)
    with client(database_url) as api:
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["com.billfold.transfer.posted.v1"]},
            headers=auth(full),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_") and endpoint["id"].startswith("whe_")
        shown = api.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth(reader)).json()
        assert shown["secret"] is None
        transfer_id = post_transfer(api, full)
        wait_for(lambda: len(receiver.received) == 1)
        path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"
        wait_for(
            lambda: api.get(path, headers=auth(reader)).json()["items"][0]["status"] == "succeeded"
        )
        [delivery] = api.get(path, headers=auth(reader)).json()["items"]
        assert delivery["attempt_log"][0]["status_code"] == 200
        assert delivery["attempt_log"][0]["response_body"] == "ok"
        events = api.get("/v1/events", headers=auth(reader)).json()["items"]
        posted = [e for e in events if e["subject"] == transfer_id]
        assert posted[0]["type"] == "com.billfold.transfer.posted.v1"
        assert posted[0]["data"]["amount"] == "42"
        one = api.get(f"/v1/events/{posted[0]['id']}", headers=auth(reader))
        assert one.json() == posted[0]
        replay = api.post(f"/v1/events/{posted[0]['id']}/replay", json={}, headers=auth(full))
        assert replay.status_code == 202 and len(replay.json()["delivery_ids"]) == 1
        wait_for(lambda: len(receiver.received) == 2)
        listed = [d["id"] for d in api.get(path, headers=auth(reader)).json()["items"]]
        assert listed == [*replay.json()["delivery_ids"], delivery["id"]]  # the replay first
    assert receiver.received[0].headers["webhook-id"] == posted[0]["id"]
    assert receiver.received[1].headers["webhook-id"] == posted[0]["id"]


def test_a_replay_to_a_disabled_endpoint_is_refused_until_it_is_enabled_again(
    database_url: str, receiver: Receiver
) -> None:
    """The worker sends nothing to a disabled endpoint, so a replay aimed at one used to be
    accepted (202) and then wait for ever: it is a 409 now, with nothing queued."""
    full, reader, _ = keys(database_url)
    with client(database_url) as api:
        endpoint = api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["com.billfold.transfer.posted.v1"]},
            headers=auth(full),
        ).json()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        transfer_id = post_transfer(api, full)
        wait_for(lambda: len(receiver.received) == 1)
        events = api.get("/v1/events", headers=auth(reader)).json()["items"]
        [event] = [e for e in events if e["subject"] == transfer_id]
        disabled = api.patch(path, json={"status": "disabled"}, headers=auth(full))
        assert disabled.json()["status"] == "disabled"
        before = api.get(f"{path}/deliveries", headers=auth(reader)).json()["items"]
        refused = api.post(
            f"/v1/events/{event['id']}/replay",
            json={"endpoint_id": endpoint["id"]},
            headers=auth(full),
        )
        body = assert_problem(refused, 409, "webhook_endpoint_disabled")
        assert body["endpoint_id"] == endpoint["id"]
        assert api.get(f"{path}/deliveries", headers=auth(reader)).json()["items"] == before
        assert api.get(path, headers=auth(reader)).json()["status"] == "disabled"
        untargeted = api.post(f"/v1/events/{event['id']}/replay", json={}, headers=auth(full))
        assert untargeted.status_code == 202 and untargeted.json()["delivery_ids"] == []
        api.patch(path, json={"status": "enabled"}, headers=auth(full))
        replayed = api.post(
            f"/v1/events/{event['id']}/replay",
            json={"endpoint_id": endpoint["id"]},
            headers=auth(full),
        )
        assert replayed.status_code == 202 and len(replayed.json()["delivery_ids"]) == 1
        wait_for(lambda: len(receiver.received) == 2)
        document = api.get("/openapi.json").json()
        responses = document["paths"]["/v1/events/{event_id}/replay"]["post"]["responses"]
        assert "application/problem+json" in responses["409"]["content"]
    assert [r.headers["webhook-id"] for r in receiver.received] == [event["id"]] * 2


def test_endpoints_can_be_listed_changed_rotated_and_deleted(
    database_url: str, receiver: Receiver
) -> None:
    full, reader, stranger = keys(database_url)
    with client(database_url) as api:
        endpoint = api.post(
            "/v1/webhook-endpoints", json={"url": receiver.url}, headers=auth(full)
        ).json()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        listed = api.get("/v1/webhook-endpoints", headers=auth(reader)).json()["items"]
        assert [e["id"] for e in listed] == [endpoint["id"]]
        changed = api.patch(
            path,
            json={"status": "disabled", "event_types": ["com.billfold.payment.captured.v1"]},
            headers=auth(full),
        ).json()
        assert changed["status"] == "disabled"
        assert changed["event_types"] == ["com.billfold.payment.captured.v1"]
        rotated = api.post(f"{path}/rotate-secret", headers=auth(full)).json()
        assert rotated["secret"] != endpoint["secret"]
        assert int(rotated["previous_secret_expires_at"]) > time.time_ns()
        assert api.get(path, headers=auth(stranger)).status_code == 404
        assert api.delete(path, headers=auth(stranger)).status_code == 404
        assert api.delete(path, headers=auth(reader)).status_code == 403
        assert api.delete(path, headers=auth(full)).status_code == 204
        assert api.get(path, headers=auth(full)).status_code == 404


def test_bad_input_is_a_clear_4xx(database_url: str) -> None:
    full, _, _ = keys(database_url)
    with client(database_url, webhooks_allow_private=False) as api:
        private = api.post(
            "/v1/webhook-endpoints", json={"url": "https://127.0.0.1/x"}, headers=auth(full)
        )
        assert_problem(private, 422, "unsafe_webhook_url")
        plain = api.post(
            "/v1/webhook-endpoints", json={"url": "http://example.com/x"}, headers=auth(full)
        )
        assert_problem(plain, 422, "unsafe_webhook_url")
        bad_type = api.post(
            "/v1/webhook-endpoints",
            json={"url": "https://example.com/x", "event_types": ["payment.captured"]},
            headers=auth(full),
        )
        assert_problem(bad_type, 422, "invalid_event_filter")
        assert_problem(api.get("/v1/events/evt_123", headers=auth(full)), 400, "invalid_id")
        missing = api.get(f"/v1/events/evt_{'0' * 32}", headers=auth(full))
        assert_problem(missing, 404, "event_not_found")
        assert_problem(api.get("/v1/events?cursor=!!", headers=auth(full)), 400, "invalid_cursor")
        stream = api.get("/v1/events/stream?aggregate=nonsense", headers=auth(full))
        assert stream.status_code == 422
        last = api.get("/v1/events/stream", headers={**auth(full), "Last-Event-ID": "x"})
        assert last.status_code == 422


def test_text_the_database_cannot_store_is_a_422_not_a_500(database_url: str) -> None:
    """PostgreSQL refuses U+0000 in text: such a description, URL or type filter used to
    fail there with a 500 (and was stored on SQLite)."""
    full, _, _ = keys(database_url)
    with client(database_url) as api:
        target = "http://127.0.0.1:9/hooks"
        for body in (
            {"url": target, "description": "a\u0000b"},
            {"url": f"{target}/\u0000"},
        ):
            created = api.post("/v1/webhook-endpoints", json=body, headers=auth(full))
            assert_problem(created, 422, "validation_failed")
        endpoint = api.post("/v1/webhook-endpoints", json={"url": target}, headers=auth(full))
        path = f"/v1/webhook-endpoints/{endpoint.json()['id']}"
        changed = api.patch(path, json={"description": "\u0000"}, headers=auth(full))
        assert_problem(changed, 422, "validation_failed")
        for kind in ("a%00b", "transfer.posted"):  # a type filter is an event type
            listed = api.get(f"/v1/events?type={kind}", headers=auth(full))
            assert_problem(listed, 422, "validation_failed")
        posted = api.get("/v1/events?type=com.billfold.transfer.posted.v1", headers=auth(full))
        assert posted.status_code == 200 and posted.json()["items"] == []


def test_a_live_stream_sends_an_aggregates_events_and_resumes_after_the_last_id(
    database_url: str,
) -> None:
    full, reader, stranger = keys(database_url)
    with client(database_url) as api:
        transfer_id = post_transfer(api, full)
        wait_for(
            lambda: any(
                e["subject"] == transfer_id
                for e in api.get("/v1/events", headers=auth(reader)).json()["items"]
            )
        )
        response = api.get(f"/v1/events/stream?aggregate={transfer_id}", headers=auth(reader))
        assert response.headers["content-type"].startswith("text/event-stream")
        blocks = [b for b in response.text.split("\n\n") if b.startswith("id:")]
        assert len(blocks) == 1
        lines = dict(line.split(": ", 1) for line in blocks[0].splitlines())
        assert lines["event"] == "com.billfold.transfer.posted.v1"
        assert f'"subject":"{transfer_id}"' in lines["data"]
        resumed = api.get(
            f"/v1/events/stream?aggregate={transfer_id}",
            headers={**auth(reader), "Last-Event-ID": lines["id"]},
        )
        assert [b for b in resumed.text.split("\n\n") if b.startswith("id:")] == []
        theirs = api.get(f"/v1/events/stream?aggregate={transfer_id}", headers=auth(stranger))
        assert [b for b in theirs.text.split("\n\n") if b.startswith("id:")] == []


def test_live_mode_keys_see_no_test_mode_events(database_url: str) -> None:
    tenant = bootstrap_tenant(database_url, "Modes").tenant.id
    test_key = create_key(database_url, tenant_id=tenant, scopes=EVERYTHING).secret
    live_key = create_key(database_url, tenant_id=tenant, scopes=EVERYTHING, mode=Mode.LIVE).secret
    with client(database_url) as api:
        transfer_id = post_transfer(api, test_key)
        wait_for(
            lambda: any(
                e["subject"] == transfer_id
                for e in api.get("/v1/events", headers=auth(test_key)).json()["items"]
            )
        )
        live_events = api.get("/v1/events", headers=auth(live_key)).json()["items"]
    assert all(e["subject"] != transfer_id for e in live_events)
