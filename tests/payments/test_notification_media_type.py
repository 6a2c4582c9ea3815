"""The notifications route reads JSON: a signed event sent as anything else is 415
`unsupported_media_type` and nothing is stored; its OpenAPI entry documents the body (the
sandbox's own events validate against it) and its 400, 401, 413 and 415."""

from __future__ import annotations

import json
import time

import jsonschema_rs
from sqlalchemy import func, select

from billfold.connectors.signatures import SIGNATURE_HEADER, signature_header
from billfold.events.models import InboundEvent
from billfold.payments.router import NOTIFICATION_SCHEMA
from payments.payments_support import World, problem


def _stored(world: World) -> int:
    async def count() -> int:
        async with world.app.state.unit_of_work.read() as session:
            total = await session.scalar(select(func.count()).select_from(InboundEvent))
            return int(total or 0)

    return world.client.portal.call(count)


def test_a_signed_event_not_sent_as_json_is_415_and_not_stored(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        payment = world.top_up(ann, 5_000).json()
        [confirmation] = world.sender.take()
        before = _stored(world)
        secret = world.runtime.sandboxes["sandbox_card"].secret
        header = signature_header(
            secret=secret, timestamp_s=int(time.time()), body=confirmation.body
        )
        path = f"/v1/connectors/{confirmation.provider}/notifications"
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {SIGNATURE_HEADER: header}
            if content_type is not None:
                headers["Content-Type"] = content_type
            response = world.client.post(path, content=confirmation.body, headers=headers)
            problem(response, 415, "unsupported_media_type")
        assert _stored(world) == before
        world.process_inbound()
        assert world.payment(payment["id"])["state"] == "processing"

        sent_as_json = world.client.post(
            path,
            content=confirmation.body,
            headers={SIGNATURE_HEADER: header, "Content-Type": "application/json; charset=utf-8"},
        )
        assert sent_as_json.status_code == 202, sent_as_json.text
        world.process_inbound()
        assert world.payment(payment["id"])["state"] == "succeeded"


def test_an_unsigned_body_is_401_whatever_its_media_type(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        response = world.client.post(
            "/v1/connectors/sandbox_card/notifications",
            content=b"not json",
            headers={"Content-Type": "text/plain"},
        )
        problem(response, 401, "invalid_signature")


def test_the_document_describes_the_body_the_sandbox_sends(database_url: str) -> None:
    with World(database_url, embedded_worker=False) as world:
        ann = world.user()
        world.top_up(ann, 5_000)
        [confirmation] = world.sender.take()
        operation = world.client.get("/openapi.json").json()["paths"][
            "/v1/connectors/{provider}/notifications"
        ]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == NOTIFICATION_SCHEMA
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(json.loads(confirmation.body))
    assert {"400", "401", "413", "415"} <= set(operation["responses"])
    for bad in ({"amount": True}, {"amount": "5000"}, {"amount": 0}, {"extra": 1}):
        envelope = json.loads(confirmation.body)
        envelope["data"] = {**envelope["data"], **bad}
        assert not validator.is_valid(envelope), f"the document admits {bad}"
