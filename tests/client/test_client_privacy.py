"""The PII vault, consents, tokens and the JWKS through the SDK against the real
application, on both backends: every method once end to end, and refusals (a missing
scope, an unknown user, bad input) as typed errors."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from billfold.client import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from billfold.identity.types import Scope
from billfold.keys.config import keyring_from_settings
from billfold.keys.service import KeyActor
from billfold.keys.signing import rotate_signing_key
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings
from client.sdk_support import USER_PASSWORD, running, unique_email
from privacy.privacy_support import MASTER_KEY

WRITER = [Scope.USERS_ADMIN, Scope.PII_WRITE]
READER = [*WRITER, Scope.PII_READ]
PAN = "4242 4242 4242 4242"


def test_pii_is_stored_masked_searched_exported_and_erased(database_url: str) -> None:
    with (
        running(database_url, master_key=MASTER_KEY) as server,
        server.billfold(WRITER) as writer,
        server.billfold(READER) as reader,
    ):
        email = unique_email()
        user = writer.users.create(email=email, password=USER_PASSWORD)["id"]
        stored = writer.pii.put(user, name="Ann Smith", email=email, phone="+8613812345678")
        assert stored["user_id"] == user and stored["masked"] is True
        assert set(stored["fields"]) == {"name", "email", "phone"}
        assert stored["fields"]["phone"] != "+8613812345678"
        assert writer.pii.get(user) == stored
        assert reader.pii.get(user) == {
            "user_id": user,
            "masked": False,
            "fields": {"name": "Ann Smith", "email": email, "phone": "+8613812345678"},
        }
        assert writer.pii.search(field="email", value=email.upper()) == {"user_ids": [user]}
        assert writer.pii.search(field="name", value="Nobody")["user_ids"] == []

        granted = writer.consents.grant(user, purpose="marketing", version="2026-01")
        assert granted["id"].startswith("cns_") and granted["withdrawn_at"] is None
        assert writer.consents.list(user) == {"items": [granted]}
        withdrawn = writer.consents.withdraw(user, "marketing")
        assert withdrawn["items"][0]["withdrawn_at"] is not None
        assert writer.consents.list(user) == withdrawn

        exported = reader.pii.export(user)
        assert exported["user"]["id"] == user and exported["user"]["email"] == email
        assert exported["pii"]["name"] == "Ann Smith"
        assert [consent["purpose"] for consent in exported["consents"]] == ["marketing"]
        assert exported["consents"][0]["withdrawn_at_ns"] is not None

        erased = reader.pii.erase(user)
        assert erased["user_id"] == user and erased["data_keys_destroyed"] >= 1
        assert erased["values_deleted"] == 3
        assert reader.pii.get(user)["fields"] == {}


def test_pii_refusals_are_typed(database_url: str) -> None:
    with (
        running(database_url, master_key=MASTER_KEY) as server,
        server.billfold(WRITER) as writer,
    ):
        user = writer.users.create(email=unique_email(), password=USER_PASSWORD)["id"]
        with pytest.raises(PermissionDeniedError) as export:
            writer.pii.export(user)
        assert export.value.extensions["required_scopes"] == ["pii:read"]
        with pytest.raises(PermissionDeniedError) as erase:
            writer.pii.erase(user)
        assert erase.value.code == "insufficient_scope"
        with pytest.raises(NotFoundError):
            writer.pii.put(f"usr_{uuid.uuid4().hex}", name="Ghost")
        with pytest.raises(BadRequestError) as bad_id:
            writer.pii.get("usr_nope")
        assert bad_id.value.code == "invalid_id"
        with pytest.raises(ValidationError):
            writer.pii.put(user, email="x" * 300)
        with pytest.raises(ValueError, match="at least one"):
            writer.pii.put(user)
        assert writer.consents.list(user) == {"items": []}


def test_tokens_round_trip_only_with_the_detokenize_scope(database_url: str) -> None:
    with (
        running(database_url, master_key=MASTER_KEY) as server,
        server.billfold(WRITER) as writer,
        server.billfold([Scope.PII_DETOKENIZE]) as detokenizer,
    ):
        token = writer.tokens.tokenize(kind="pan", value=PAN)
        assert token["id"].startswith("tok_") and token["kind"] == "pan"
        assert token["last4"] == "4242" and token["token"] != PAN
        assert writer.tokens.tokenize(kind="pan", value=PAN)["token"] == token["token"]
        with pytest.raises(PermissionDeniedError) as refused:
            writer.tokens.detokenize(kind="pan", token=token["token"])
        assert refused.value.code == "insufficient_scope"
        assert refused.value.extensions["required_scopes"] == ["pii:detokenize"]
        revealed = detokenizer.tokens.detokenize(kind="pan", token=token["token"])
        assert revealed == {
            "id": token["id"],
            "kind": "pan",
            "token": token["token"],
            "value": PAN.replace(" ", ""),
        }
        with pytest.raises(NotFoundError):
            detokenizer.tokens.detokenize(kind="bank_account", token=token["token"])
        with pytest.raises(ValidationError):
            writer.tokens.tokenize(kind="pan", value="")


def _rotate_tenant_key(database_url: str, tenant_id: uuid.UUID) -> str:
    keyring = keyring_from_settings(Settings(database_url=database_url, master_key=MASTER_KEY))

    async def run() -> str:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).begin() as session:
                row = await rotate_signing_key(
                    session,
                    keyring=keyring,
                    tenant_id=tenant_id,
                    purpose="audit",
                    actor=KeyActor(),
                    now_ns=time.time_ns(),
                )
                return f"sig_{row.id.hex}"
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    finally:
        keyring.close()


def test_the_jwks_of_the_tenant_and_of_the_platform(database_url: str) -> None:
    with (
        running(database_url, master_key=MASTER_KEY) as server,
        server.billfold([Scope.LEDGER_READ]) as billfold,
    ):
        platform = billfold.signing_keys.platform()
        assert isinstance(platform["keys"], list)
        assert billfold.signing_keys.tenant() == {"keys": []}
        kid = _rotate_tenant_key(server.database_url, server.tenant.tenant.id)
        [key] = billfold.signing_keys.tenant()["keys"]
        assert key["kid"] == kid
        assert (key["kty"], key["crv"], key["use"], key["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
