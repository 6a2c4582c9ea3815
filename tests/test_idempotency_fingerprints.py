"""Idempotency fingerprints are keyed, on SQLite and PostgreSQL: the request a stored key
belongs to (a card number, an email searched for) cannot be found again by hashing guesses
without the keystore; keys stored unkeyed before the change still replay; and without a
configured keystore fingerprints are plain SHA-256, as before."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.keys.fingerprint_key import FINGERPRINT_KEY_LABEL
from billfold.keys.keystore import LocalKeystore
from billfold.kit.http.idempotency_store import request_fingerprint
from billfold.privacy.masking import luhn_valid
from identity.identity_support import run_in_unit_of_work
from ledger.ledger_api_support import api, make_keys
from ledger.ledger_api_support import auth as ledger_auth
from privacy.privacy_support import MASTER_KEY, auth, new_privacy_tenant, privacy_client

REPLAYED = "Idempotent-Replayed"


def _card_number() -> str:
    digits = "4" + "".join(secrets.choice("0123456789") for _ in range(14))
    return next(digits + d for d in "0123456789" if luhn_valid(digits + d))


def _stored_fingerprint(database_url: str, key: str) -> str:
    async def read(session: AsyncSession) -> str:
        statement = text("SELECT fingerprint FROM idempotency_keys WHERE key = :key")
        return str((await session.execute(statement, {"key": key})).scalar_one())

    return run_in_unit_of_work(database_url, read)


def _store_fingerprint(database_url: str, key: str, fingerprint: str) -> None:
    async def write(session: AsyncSession) -> None:
        statement = text("UPDATE idempotency_keys SET fingerprint = :fingerprint WHERE key = :key")
        await session.execute(statement, {"key": key, "fingerprint": fingerprint})

    run_in_unit_of_work(database_url, write)


def _fingerprint_key() -> bytes:
    """The key as the root key derives it: nothing in the database holds it."""
    return LocalKeystore(base64.b64decode(MASTER_KEY)).derive_key(FINGERPRINT_KEY_LABEL)


def _token_request(pan: str) -> bytes:
    return f'{{"kind":"pan","value":"{pan}"}}'.encode()


def _keyed_token_request(database_url: str) -> tuple[str, bytes, dict[str, str]]:
    """A new tenant's tokenization of a fresh card number, with an `Idempotency-Key`:
    the key, the body and the headers."""
    tenant = new_privacy_tenant(database_url)
    key = uuid.uuid4().hex
    headers = {**auth(tenant.writer), "Idempotency-Key": key, "Content-Type": "application/json"}
    return key, _token_request(_card_number()), headers


def _unkeyed(path: str, body: bytes) -> str:
    return request_fingerprint(method="POST", path=path, query_string=b"", body=body)


def test_a_card_numbers_fingerprint_is_an_hmac_under_a_key_outside_the_database(
    database_url: str,
) -> None:
    key, body, headers = _keyed_token_request(database_url)
    with privacy_client(database_url) as client:
        first = client.post("/v1/tokens", content=body, headers=headers)
        again = client.post("/v1/tokens", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    stored = _stored_fingerprint(database_url, key)
    assert stored != _unkeyed("/v1/tokens", body)  # hashing the guessed number finds nothing
    signing = hmac.new(_fingerprint_key(), digestmod=hashlib.sha256)
    for part in (b"POST", b"/v1/tokens", b""):
        signing.update(len(part).to_bytes(8, "big") + part)
    signing.update(body)
    assert stored == signing.hexdigest()


def test_a_key_stored_unkeyed_before_the_change_replays_and_still_refuses_another_body(
    database_url: str,
) -> None:
    key, body, headers = _keyed_token_request(database_url)
    with privacy_client(database_url) as client:
        first = client.post("/v1/tokens", content=body, headers=headers)
        assert first.status_code == 200, first.text
        _store_fingerprint(database_url, key, _unkeyed("/v1/tokens", body))
        retry = client.post("/v1/tokens", content=body, headers=headers)
        other = client.post("/v1/tokens", content=_token_request(_card_number()), headers=headers)
    assert retry.status_code == 200 and retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"


def test_without_a_configured_keystore_fingerprints_are_plain_sha256(database_url: str) -> None:
    keys = make_keys(database_url)
    key = uuid.uuid4().hex
    body = b'{"ledger":"USD","code":1}'
    headers = ledger_auth(keys.writer, **{"Idempotency-Key": key})
    headers["Content-Type"] = "application/json"
    with api(database_url) as client:
        created = client.post("/v1/accounts", content=body, headers=headers)
    assert created.status_code == 201, created.text
    assert _stored_fingerprint(database_url, key) == _unkeyed("/v1/accounts", body)


def test_a_configured_keystore_that_cannot_open_refuses_keyed_posts_and_keeps_nothing(
    database_url: str,
) -> None:
    """A fingerprint made without the key would not match the keys stored with it: the
    request is refused (503, retryable) rather than answered 422 or run twice."""
    keys = make_keys(database_url)
    key = uuid.uuid4().hex
    body = {"ledger": "USD", "code": 1}
    with api(database_url, keystore="pkcs11", pkcs11_pin=None) as client:
        refused = client.post(
            "/v1/accounts", json=body, headers=ledger_auth(keys.writer, **{"Idempotency-Key": key})
        )
        unkeyed = client.post("/v1/accounts", json=body, headers=ledger_auth(keys.writer))
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "keystore_unavailable"
    assert unkeyed.status_code == 201, unkeyed.text

    async def count(session: AsyncSession) -> int:
        statement = text("SELECT count(*) FROM idempotency_keys WHERE key = :key")
        return int((await session.execute(statement, {"key": key})).scalar_one())

    assert run_in_unit_of_work(database_url, count) == 0


def _stored_body(database_url: str, key: str) -> bytes:
    async def read(session: AsyncSession) -> bytes:
        statement = text("SELECT response_body FROM idempotency_keys WHERE key = :key")
        return bytes((await session.execute(statement, {"key": key})).scalar_one())

    return run_in_unit_of_work(database_url, read)


def test_a_kept_answer_is_sealed_so_the_database_holds_no_email_of_a_sign_up(
    database_url: str,
) -> None:
    """A sign-up's answer names the user's email; kept for replay (24 hours or more, past
    an erasure), it is stored sealed under a key only the same request gives."""
    tenant = new_privacy_tenant(database_url)
    email, key = f"u{uuid.uuid4().hex[:10]}@example.com", uuid.uuid4().hex
    body = {"email": email, "password": "correct horse battery"}
    headers = {**auth(tenant.writer), "Idempotency-Key": key}
    with privacy_client(database_url) as client:
        first = client.post("/v1/users", json=body, headers=headers)
        again = client.post("/v1/users", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert email in first.text
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    assert "x-billfold-sealed" not in again.headers
    stored = _stored_body(database_url, key)
    assert email.encode() not in stored and first.json()["id"].encode() not in stored
    assert first.content not in stored
