"""Erasure by crypto-shredding, on both backends: afterwards no API and no database read
recovers the user's PII (not even from a copy of the ciphertexts taken before), other
users are untouched, and the ledger still verifies."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from billfold.keys import service
from billfold.keys.config import keyring_from_settings
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import KeyDestroyed
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import parse_id
from conftest import open_ledger
from identity.identity_support import run_in_unit_of_work
from ledger.ledger_api_support import open_account, post_transfer, transfer
from privacy.privacy_support import (
    auth,
    new_privacy_tenant,
    privacy_client,
    privacy_settings,
    sign_up,
)
from privacy.test_privacy_api import PII, _events, _stored


def _ciphertexts(database_url: str, user_id: uuid.UUID) -> list[tuple[str, bytes]]:
    async def read(session: object) -> list[tuple[str, bytes]]:
        key = user_id.hex if session.get_bind().dialect.name == "sqlite" else user_id  # type: ignore[attr-defined]
        rows = await session.execute(  # type: ignore[attr-defined]
            text("SELECT field, ciphertext FROM privacy_pii_values WHERE user_id = :u"),
            {"u": key},
        )
        return [(row[0], bytes(row[1])) for row in rows]

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


async def _decrypt_backup(
    database_url: str, tenant_id: uuid.UUID, user_id: uuid.UUID, backup: list[tuple[str, bytes]]
) -> None:
    """Try to decrypt a pre-erasure copy of the ciphertexts with a fresh keyring (no cache)."""
    keyring = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            for field, ciphertext in backup:
                context = FieldContext(
                    tenant_id=tenant_id,
                    purpose="pii",
                    table="privacy_pii_values",
                    column=field,
                    row_id=user_id.hex,
                )
                with pytest.raises(KeyDestroyed):
                    await keyring.decrypt(session, ciphertext, context=context)
    finally:
        await engine.dispose()
        keyring.close()


def test_erasure_crypto_shreds_the_user_and_keeps_the_ledger(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        email = f"erase-{uuid.uuid4().hex[:8]}@example.com"
        erased = sign_up(client, tenant.writer, email=email)
        kept = sign_up(client, tenant.writer)
        for user in (erased, kept):
            assert (
                client.put(
                    f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer)
                ).status_code
                == 200
            )
        client.post(
            f"/v1/users/{erased}/consents",
            json={"purpose": "marketing", "version": "1"},
            headers=auth(tenant.writer),
        )
        # Ledger history that mentions nothing personal, written before the erasure.
        debit = open_account(client, tenant.ledger)["id"]
        credit = open_account(client, tenant.ledger)["id"]
        post_transfer(client, tenant.ledger, transfer(debit, credit, "2500"))
        user_id = parse_id("usr", erased)
        backup = _ciphertexts(database_url, user_id)
        assert len(backup) == len(PII)

        assert (
            client.post(f"/v1/users/{erased}/erasure", headers=auth(tenant.writer)).status_code
            == 403
        )
        response = client.post(f"/v1/users/{erased}/erasure", headers=auth(tenant.reader))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "user_id": erased,
            "data_keys_destroyed": 1,
            "values_deleted": len(PII),
            "consents_withdrawn": 1,
        }
        after = client.get(f"/v1/users/{erased}/pii", headers=auth(tenant.reader)).json()
        assert after["fields"] == {}
        exported = client.get(f"/v1/users/{erased}/export", headers=auth(tenant.reader)).json()
        assert exported["pii"] == {} and exported["user"]["email"] is None
        assert exported["user"]["status"] == "disabled"
        search = client.post(
            "/v1/pii/search",
            json={"field": "email", "value": PII["email"]},
            headers=auth(tenant.writer),
        ).json()
        assert search["user_ids"] == [kept]
        user_view = client.get(f"/v1/users/{erased}", headers=auth(tenant.writer)).json()
        assert user_view["email"] is None and user_view["phone"] is None
        kept_view = client.get(f"/v1/users/{kept}/pii", headers=auth(tenant.reader)).json()
        assert kept_view["fields"] == PII
        balance = client.get(f"/v1/accounts/{credit}/balances", headers=auth(tenant.ledger))
        assert balance.json()["credits_posted"] == "2500"
    assert _ciphertexts(database_url, user_id) == []
    asyncio.run(_decrypt_backup(database_url, tenant.tenant_id, user_id, backup))
    blob = _stored(database_url)
    assert email.encode() not in blob
    assert all(value.encode() not in blob for value in PII.values())
    assert "pii.erased" in _events(database_url, tenant.tenant_id)

    async def verify() -> bool:
        ledger = await open_ledger(database_url)
        try:
            report = await ledger.verify(grace_s=3600)
        finally:
            await ledger.close()
        return report.ok and report.transfers_checked >= 1

    assert asyncio.run(verify())


def test_erasing_twice_is_harmless_and_an_unknown_user_is_404(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        client.put(f"/v1/users/{user}/pii", json={"name": "Ann"}, headers=auth(tenant.writer))
        first = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader)).json()
        second = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader)).json()
        assert first["data_keys_destroyed"] == 1 and second["data_keys_destroyed"] == 0
        missing = client.post("/v1/users/usr_" + "0" * 32 + "/erasure", headers=auth(tenant.reader))
        assert missing.status_code == 404


async def _rotate_pii_keys(database_url: str, tenant_id: uuid.UUID) -> None:
    keyring = keyring_from_settings(privacy_settings(database_url))
    engine = create_engine(parse_database_url(database_url), pool_size=1)
    try:
        async with UnitOfWork(engine).begin() as session:
            await service.rotate(
                session,
                keyring=keyring,
                tenant_id=tenant_id,
                purpose="pii",
                actor=service.KeyActor(),
                now_ns=1,
            )
    finally:
        await engine.dispose()
        keyring.close()


def test_an_erased_users_pii_cannot_be_stored_again_even_after_a_rotation(
    database_url: str,
) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        assert client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader)).is_success
        asyncio.run(_rotate_pii_keys(database_url, tenant.tenant_id))
        refused = client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "key_destroyed"
        search = client.post(
            "/v1/pii/search",
            json={"field": "email", "value": PII["email"]},
            headers=auth(tenant.writer),
        )
        assert search.json()["user_ids"] == []
    assert _ciphertexts(database_url, parse_id("usr", user)) == []
