"""The PII vault, tokenization and consent over HTTP, on both backends: masked by default,
full values only with pii:read, searchable without decryption, tenants kept apart."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import text

from billfold.migrations import upgrade
from billfold.privacy.masking import luhn_valid
from identity.identity_support import run_in_unit_of_work
from privacy.privacy_support import auth, new_privacy_tenant, privacy_client, sign_up

PII = {
    "name": "Zhang Wei",
    "email": "zhang.wei@example.com",
    "phone": "+8613812345678",
    "national_id": "110101199003074578",
    "address": "1 Jianguo Road, Beijing",
    "bank_account": "DE89370400440532013000",
}
MASKED = {
    "name": "Z**** W**",
    "email": "z***@example.com",
    "phone": "+86 138****5678",
    "national_id": "**** 4578",
    "address": "1 J***",
    "bank_account": "**** 3000",
}


def _events(database_url: str, tenant_id: object) -> list[str]:
    async def read(session: object) -> list[str]:
        key = tenant_id.hex if session.get_bind().dialect.name == "sqlite" else tenant_id  # type: ignore[attr-defined]
        rows = await session.execute(  # type: ignore[attr-defined]
            text("SELECT event_type FROM identity_security_events WHERE tenant_id = :t"),
            {"t": key},
        )
        return [row[0] for row in rows]

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


def _stored(database_url: str) -> bytes:
    """Every byte of the privacy and identity tables, as one blob to search."""

    async def read(session: object) -> bytes:
        blob = b""
        for table in ("privacy_pii_values", "privacy_tokens", "identity_users"):
            rows = await session.execute(text(f"SELECT * FROM {table}"))  # type: ignore[attr-defined]
            for row in rows:
                for value in row:
                    blob += value if isinstance(value, bytes) else str(value).encode()
        return blob

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


def test_pii_is_masked_unless_the_caller_holds_pii_read(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        stored = client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        assert stored.status_code == 200, stored.text
        assert stored.json() == {"user_id": user, "masked": True, "fields": MASKED}
        masked = client.get(f"/v1/users/{user}/pii", headers=auth(tenant.writer))
        assert masked.json()["fields"] == MASKED
        full = client.get(f"/v1/users/{user}/pii", headers=auth(tenant.reader))
        assert full.json() == {"user_id": user, "masked": False, "fields": PII}
        assert full.headers["cache-control"] == "no-store"  # no cache may keep it
    assert "pii.revealed" in _events(database_url, tenant.tenant_id)
    blob = _stored(database_url)
    for value in PII.values():
        assert value.encode() not in blob


def test_search_finds_exact_matches_through_blind_indexes(database_url: str) -> None:
    tenant, other = new_privacy_tenant(database_url), new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        ann = sign_up(client, tenant.writer)
        bob = sign_up(client, tenant.writer)
        stranger = sign_up(client, other.writer)
        for key, user, phone in (
            (tenant.writer, ann, "+8613800000001"),
            (tenant.writer, bob, "+8613800000002"),
            (other.writer, stranger, "+8613800000001"),
        ):
            body = {"email": "Shared@Example.com", "phone": phone}
            assert (
                client.put(f"/v1/users/{user}/pii", json=body, headers=auth(key)).status_code == 200
            )

        def search(key: str, field: str, value: str) -> list[str]:
            response = client.post(
                "/v1/pii/search", json={"field": field, "value": value}, headers=auth(key)
            )
            assert response.status_code == 200, response.text
            found: list[str] = response.json()["user_ids"]
            return found

        assert search(tenant.writer, "email", "shared@example.COM ") == sorted([ann, bob])
        assert search(tenant.writer, "phone", "+86 138 0000 0001") == [ann]
        assert search(other.writer, "phone", "+8613800000001") == [stranger]
        assert search(tenant.writer, "phone", "+8613899999999") == []
        refused = client.post(
            "/v1/pii/search", json={"field": "address", "value": "x"}, headers=auth(tenant.writer)
        )
        assert refused.status_code == 422


def test_bad_pii_input_is_a_clear_422(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        for body in (
            {},
            {"phone": "12345"},
            {"email": "not-an-address"},
            {"colour": "red"},
            {"national_id": "!!"},
            {"name": " "},
            {"name": "x" * 201},
        ):
            response = client.put(f"/v1/users/{user}/pii", json=body, headers=auth(tenant.writer))
            assert response.status_code == 422, (body, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        missing = client.put(
            "/v1/users/usr_" + "0" * 32 + "/pii", json=PII, headers=auth(tenant.writer)
        )
        assert missing.status_code == 404
        assert (
            client.put("/v1/users/nonsense/pii", json=PII, headers=auth(tenant.writer)).status_code
            == 400
        )


def test_another_tenants_caller_cannot_reach_a_users_pii(database_url: str) -> None:
    owner, intruder = new_privacy_tenant(database_url), new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, owner.writer)
        client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(owner.writer))
        client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "marketing", "version": "1"},
            headers=auth(owner.writer),
        )
        for method, path, body in (
            ("GET", f"/v1/users/{user}/pii", None),
            ("PUT", f"/v1/users/{user}/pii", {"name": "Mallory"}),
            ("GET", f"/v1/users/{user}/export", None),
            ("POST", f"/v1/users/{user}/erasure", None),
            ("GET", f"/v1/users/{user}/consents", None),
            ("POST", f"/v1/users/{user}/consents", {"purpose": "marketing", "version": "1"}),
            ("POST", f"/v1/users/{user}/consents/marketing/withdraw", None),
        ):
            response = client.request(method, path, json=body, headers=auth(intruder.reader))
            assert response.status_code == 404, (method, path, response.text)
        still = client.get(f"/v1/users/{user}/pii", headers=auth(owner.reader))
        assert still.json()["fields"]["name"] == "Zhang Wei"


def test_cards_and_accounts_tokenize_and_detokenize_only_with_the_scope(database_url: str) -> None:
    tenant, other = new_privacy_tenant(database_url), new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        created = client.post(
            "/v1/tokens",
            json={"kind": "pan", "value": "4242 4242 4242 4242"},
            headers=auth(tenant.writer),
        )
        assert created.status_code == 200, created.text
        token = created.json()
        assert token["masked"] == "**** 4242" and token["last4"] == "4242"
        surrogate = token["token"]
        assert len(surrogate) == 16 and surrogate.endswith("4242") and surrogate[0] == "9"
        assert luhn_valid(surrogate) and surrogate != "4242424242424242"
        again = client.post(
            "/v1/tokens",
            json={"kind": "pan", "value": "4242-4242-4242-4242"},
            headers=auth(tenant.writer),
        )
        assert again.json()["token"] == surrogate
        account = client.post(
            "/v1/tokens",
            json={"kind": "bank_account", "value": "DE89 3704 0044 0532 0130 00"},
            headers=auth(tenant.writer),
        ).json()
        assert account["token"].startswith("TK") and account["token"].endswith("3000")
        body = {"kind": "pan", "token": surrogate}
        refused = client.post("/v1/tokens/detokenize", json=body, headers=auth(tenant.reader))
        assert refused.status_code == 403
        revealed = client.post("/v1/tokens/detokenize", json=body, headers=auth(tenant.detokenizer))
        assert revealed.status_code == 200, revealed.text
        assert revealed.json()["value"] == "4242424242424242"
        stranger = client.post("/v1/tokens/detokenize", json=body, headers=auth(other.detokenizer))
        assert stranger.status_code == 404
        for bad in (
            {"kind": "pan", "value": "4242424242424241"},
            {"kind": "pan", "value": "12ab"},
            {"kind": "bank_account", "value": "short"},
            {"kind": "iban", "value": "DE89370400440532013000"},
        ):
            response = client.post("/v1/tokens", json=bad, headers=auth(tenant.writer))
            assert response.status_code == 422, (bad, response.text)
    assert _events(database_url, tenant.tenant_id).count("pii.detokenized") == 1
    assert b"4242424242424242" not in _stored(database_url)


def test_consent_is_recorded_and_withdrawn_with_events(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        granted = client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "marketing", "version": "2026-01"},
            headers=auth(tenant.writer),
        )
        assert granted.status_code == 201, granted.text
        assert granted.json()["withdrawn_at"] is None
        withdrawn = client.post(
            f"/v1/users/{user}/consents/marketing/withdraw", headers=auth(tenant.writer)
        )
        assert withdrawn.status_code == 200
        assert withdrawn.json()["items"][0]["withdrawn_at"] is not None
        again = client.post(
            f"/v1/users/{user}/consents/marketing/withdraw", headers=auth(tenant.writer)
        )
        assert again.status_code == 404
        listed = client.get(f"/v1/users/{user}/consents", headers=auth(tenant.writer)).json()
        assert [item["purpose"] for item in listed["items"]] == ["marketing"]
        bad = client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "Bad Purpose!", "version": "1"},
            headers=auth(tenant.writer),
        )
        assert bad.status_code == 422
    events = _events(database_url, tenant.tenant_id)
    assert "consent.granted" in events and "consent.withdrawn" in events


def test_export_holds_everything_about_the_user(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer, email="ann@example.com")
        client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        client.post(
            f"/v1/users/{user}/consents",
            json={"purpose": "analytics", "version": "3"},
            headers=auth(tenant.writer),
        )
        assert (
            client.get(f"/v1/users/{user}/export", headers=auth(tenant.writer)).status_code == 403
        )
        exported = client.get(f"/v1/users/{user}/export", headers=auth(tenant.reader))
        assert exported.status_code == 200
        assert exported.headers["cache-control"] == "no-store"
        document = exported.json()
        assert document["user"]["id"] == user and document["user"]["email"] == "ann@example.com"
        assert document["pii"] == PII
        assert [c["purpose"] for c in document["consents"]] == ["analytics"]
        json.dumps(document)
    assert "pii.exported" in _events(database_url, tenant.tenant_id)


def test_jwks_publishes_platform_keys_publicly_and_tenant_keys_to_the_tenant(
    database_url: str,
) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        public = client.get("/.well-known/jwks.json")
        assert public.status_code == 200 and isinstance(public.json()["keys"], list)
        assert client.get("/v1/jwks").status_code == 401
        assert client.get("/v1/jwks", headers=auth(tenant.writer)).json() == {"keys": []}


def test_the_embedded_keystore_file_is_made_on_first_use_wrapped_by_the_passphrase(
    tmp_path: Path,
) -> None:
    """SQLite with only a passphrase: the first PII write makes the keystore file beside
    the database (0600, the root key wrapped, never in the clear); a restart reads the data
    back with it."""
    database_url = f"sqlite:///{tmp_path}/fresh.db"
    upgrade(database_url)
    tenant = new_privacy_tenant(database_url)
    embedded = {"master_key": None, "keystore_passphrase": "correct horse battery staple"}
    with privacy_client(database_url, **embedded) as client:
        user = sign_up(client, tenant.writer)
        stored = client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        assert stored.status_code == 200, stored.text
    keystore = tmp_path / "fresh.db.keystore"
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert json.loads(keystore.read_text())["protection"] == "argon2id"
    with privacy_client(database_url, **embedded) as client:
        again = client.get(f"/v1/users/{user}/pii", headers=auth(tenant.reader))
        assert again.json()["fields"] == PII


def test_without_a_protected_keystore_pii_routes_answer_503_and_nothing_else_does(
    database_url: str,
) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url, master_key=None) as client:
        user = sign_up(client, tenant.writer)
        refused = client.put(f"/v1/users/{user}/pii", json=PII, headers=auth(tenant.writer))
        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "keystore_unavailable"
        assert client.get("/healthz").status_code == 200
