"""PATCH /v1/webhook-endpoints/{id}: a field named `null` or a body naming nothing is refused
(it used to answer 200 and change nothing but `updated_at`), and a status the endpoint
already has changes nothing (it used to restart its failing count, or replace the reason
the worker disabled it for)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from events.events_api_support import auth, client, keys, post_transfer, wait_for
from events.events_support import Receiver, Reply
from ledger.ledger_api_support import assert_problem


@pytest.fixture
def failing() -> Iterator[Receiver]:
    with Receiver(lambda _: Reply(status=500, body=b"down")) as running:
        yield running


@pytest.fixture
def gone() -> Iterator[Receiver]:
    with Receiver(lambda _: Reply(status=410, body=b"gone")) as running:
        yield running


def test_a_null_field_or_an_empty_patch_is_a_422_and_changes_nothing(database_url: str) -> None:
    full, _, _ = keys(database_url)
    with client(database_url, embedded_worker=False) as api:
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hooks", "description": "kept"},
            headers=auth(full),
        ).json()
        path = f"/v1/webhook-endpoints/{created['id']}"
        bodies: list[dict[str, Any]] = [
            {},
            {"url": None},
            {"description": None},
            {"event_types": None},
            {"status": None},
            {"batch_size_max": None},
            {"description": "changed", "url": None},
        ]
        for body in bodies:
            assert_problem(api.patch(path, json=body, headers=auth(full)), 422, "validation_failed")
        shown = api.get(path, headers=auth(full)).json()
        assert shown["description"] == "kept"
        assert shown["updated_at"] == created["updated_at"]
        document = api.get("/openapi.json").json()
        schema = document["components"]["schemas"]["EndpointUpdateRequest"]
        assert schema["minProperties"] == 1
        assert all("anyOf" not in field for field in schema["properties"].values())


def test_enabling_an_enabled_endpoint_keeps_its_failing_since(
    database_url: str, failing: Receiver
) -> None:
    """A tool that PATCHes an endpoint's whole desired state (`"status": "enabled"` with
    each change) must not restart the failing count that disables a dead receiver."""
    full, _, _ = keys(database_url)
    with client(database_url) as api:
        endpoint = api.post(
            "/v1/webhook-endpoints", json={"url": failing.url}, headers=auth(full)
        ).json()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        post_transfer(api, full)
        wait_for(lambda: api.get(path, headers=auth(full)).json()["failing_since"] is not None)
        since = api.get(path, headers=auth(full)).json()["failing_since"]
        changed = api.patch(
            path, json={"status": "enabled", "description": "same"}, headers=auth(full)
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["description"] == "same"
        assert changed.json()["failing_since"] == since


def test_disabling_a_disabled_endpoint_keeps_the_reason_it_was_disabled_for(
    database_url: str, gone: Receiver
) -> None:
    full, _, _ = keys(database_url)
    with client(database_url) as api:
        endpoint = api.post("/v1/webhook-endpoints", json={"url": gone.url}, headers=auth(full))
        path = f"/v1/webhook-endpoints/{endpoint.json()['id']}"
        post_transfer(api, full)
        wait_for(lambda: api.get(path, headers=auth(full)).json()["status"] == "disabled")
        reason = api.get(path, headers=auth(full)).json()["disabled_reason"]
        assert reason is not None and "410" in reason
        again = api.patch(path, json={"status": "disabled"}, headers=auth(full))
        assert again.status_code == 200, again.text
        assert again.json()["disabled_reason"] == reason
        enabled = api.patch(path, json={"status": "enabled"}, headers=auth(full)).json()
        assert enabled["status"] == "enabled" and enabled["disabled_reason"] is None
        by_tenant = api.patch(path, json={"status": "disabled"}, headers=auth(full)).json()
        assert by_tenant["disabled_reason"] == "disabled by the tenant"
