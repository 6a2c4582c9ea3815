"""Webhook endpoint secrets at rest: sealed with the keyring when a keystore is configured
(bound to tenant, table, column and row), stored as they are otherwise; deliveries are
signed with the clear secret either way."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from billfold.events.models import WebhookEndpoint
from billfold.events.secrets import SEALED_PREFIX, keystore_configured, open_secret
from billfold.keys.errors import DecryptionFailed
from billfold.keys.keyring import Keyring
from billfold.kit.ids import parse_id
from billfold.kit.settings import Settings
from events.events_api_support import auth, client, keys, post_transfer, wait_for
from events.events_support import Receiver
from identity.identity_support import run_in_unit_of_work

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def stored_row(database_url: str, endpoint_id: str) -> WebhookEndpoint:
    async def read(session: object) -> WebhookEndpoint:
        row = await session.scalar(  # type: ignore[attr-defined]
            select(WebhookEndpoint).where(WebhookEndpoint.id == parse_id("whe", endpoint_id))
        )
        assert isinstance(row, WebhookEndpoint)
        return row

    return run_in_unit_of_work(database_url, read)


def test_with_a_keystore_secrets_are_sealed_and_deliveries_still_verify(
    database_url: str,
) -> None:
    full, _, _ = keys(database_url)
    with Receiver() as receiver, client(database_url, master_key=MASTER_KEY) as api:
        created = api.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "event_types": ["com.billfold.transfer.posted.v1"]},
            headers=auth(full),
        ).json()
        secret = created["secret"]
        assert secret.startswith("whsec_")
        row = stored_row(database_url, created["id"])
        assert row.secret.startswith(SEALED_PREFIX) and secret not in row.secret
        assert len(row.secret) <= WebhookEndpoint.__table__.c.secret.type.length  # type: ignore[attr-defined]
        post_transfer(api, full)
        wait_for(lambda: len(receiver.received) == 1)
        rotated = api.post(
            f"/v1/webhook-endpoints/{created['id']}/rotate-secret", headers=auth(full)
        ).json()["secret"]
        rotated_row = stored_row(database_url, created["id"])
        assert rotated_row.previous_secret is not None
        assert rotated_row.previous_secret.startswith(SEALED_PREFIX)
        assert rotated not in rotated_row.secret and secret not in rotated_row.previous_secret
        post_transfer(api, full)
        wait_for(lambda: len(receiver.received) == 2)
        keyring: Keyring = api.app.state.keyring  # type: ignore[attr-defined]

        async def moved(session: object) -> str:
            """The sealed secret read as if it were another column's: it does not open."""
            return await open_secret(
                session,  # type: ignore[arg-type]
                keyring,
                tenant_id=rotated_row.tenant_id,
                endpoint_id=rotated_row.id,
                column="previous_secret",
                stored=rotated_row.secret,
            )

        with pytest.raises(DecryptionFailed):
            run_in_unit_of_work(database_url, moved)

        async def elsewhere(session: object) -> str:
            return await open_secret(
                session,  # type: ignore[arg-type]
                keyring,
                tenant_id=rotated_row.tenant_id,
                endpoint_id=uuid.uuid4(),
                column="secret",
                stored=rotated_row.secret,
            )

        with pytest.raises(DecryptionFailed):
            run_in_unit_of_work(database_url, elsewhere)
    first, second = receiver.received
    assert Webhook(secret).verify(first.body, first.headers)["type"].endswith("posted.v1")
    for key in (secret, rotated):  # during the overlap both secrets sign
        Webhook(key).verify(second.body, second.headers)


def test_without_a_keystore_secrets_are_stored_as_they_are(database_url: str) -> None:
    assert not keystore_configured(Settings(database_url=database_url))
    full, _, _ = keys(database_url)
    with client(database_url) as api:
        created = api.post(
            "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/h"}, headers=auth(full)
        ).json()
    assert stored_row(database_url, created["id"]).secret == created["secret"]


def test_a_configured_keystore_is_recognised() -> None:
    sqlite = "sqlite:///billfold.db"
    assert keystore_configured(Settings(database_url=sqlite, master_key=MASTER_KEY))
    assert keystore_configured(Settings(database_url=sqlite, keystore_allow_unprotected=True))
    assert not keystore_configured(
        Settings(database_url="postgresql://u@h/d", keystore_allow_unprotected=True)
    )
