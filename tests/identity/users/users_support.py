"""Helpers for end-user tests: an app with the users router, tenants, sign-up, sign-in."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.auth import authenticate
from billfold.identity.passwords import PasswordParameters
from billfold.identity.security_events import list_security_events
from billfold.identity.service import BootstrappedTenant, CreatedApiKey
from billfold.identity.types import Mode, Scope
from billfold.identity.users.config import UsersConfig
from billfold.identity.users.passkeys import RelyingParty
from billfold.identity.users.router import router
from billfold.identity.users.signatures import request_message
from billfold.identity.users.totp import totp_code
from billfold.keys.keyring import Keyring
from billfold.keys.keystore import LocalKeystore
from billfold.kit.auth import install_auth
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import install_problem_handlers
from identity.identity_support import bootstrap_tenant, create_key, run_in_unit_of_work
from identity.users.software_authenticator import b64url

RELYING_PARTY = RelyingParty(
    id="wallet.example", name="Example Wallet", origins=("https://wallet.example",)
)
ORIGIN = "https://wallet.example"
# Cheap hashing keeps the suite fast; production parameters are tested on their own.
FAST_PASSWORDS = PasswordParameters(time_cost=1, memory_cost_kib=1024, parallelism=1)
PASSWORD = "correct horse battery"
PROBLEM_JSON = "application/problem+json"
ROOT_KEY = bytes(range(32))
"""The test root key (TOTP seeds are sealed under it); base64 for `BILLFOLD_MASTER_KEY`."""
MASTER_KEY = base64.b64encode(ROOT_KEY).decode()


def users_config(clock: ManualClock | None = None, **overrides: Any) -> UsersConfig:
    values: dict[str, Any] = {
        "relying_party": RELYING_PARTY,
        "password_parameters": FAST_PASSWORDS,
        "clock": clock or ManualClock(start_ns=time.time_ns()),
    }
    values.update(overrides)
    return UsersConfig(**values)


def users_app(database_url: str, config: UsersConfig) -> FastAPI:
    """Only what the users router needs: a unit of work, a keyring (TOTP seeds), API-key
    auth, problem handlers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(parse_database_url(database_url), pool_size=2)
        app.state.unit_of_work = UnitOfWork(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    install_problem_handlers(app)
    install_auth(app, authenticator=authenticate)
    app.state.users_config = config
    app.state.keyring = Keyring(lambda: LocalKeystore(ROOT_KEY))
    app.include_router(router)
    return app


@contextmanager
def users_client(database_url: str, config: UsersConfig) -> Iterator[TestClient]:
    with TestClient(users_app(database_url, config)) as client:
        yield client


@dataclass(frozen=True)
class Tenancy:
    """A tenant with a `users:admin` key per mode."""

    tenant: BootstrappedTenant
    test_key: CreatedApiKey
    live_key: CreatedApiKey

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.tenant.tenant.id

    @property
    def public_id(self) -> str:
        return f"ten_{self.tenant_id.hex}"


def new_tenancy(database_url: str) -> Tenancy:
    tenant = bootstrap_tenant(database_url, name=f"Wallet {uuid.uuid4().hex[:6]}")
    keys = [
        create_key(database_url, tenant_id=tenant.tenant.id, scopes=[Scope.USERS_ADMIN], mode=mode)
        for mode in (Mode.TEST, Mode.LIVE)
    ]
    return Tenancy(tenant=tenant, test_key=keys[0], live_key=keys[1])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(
    client: TestClient,
    key: CreatedApiKey,
    *,
    email: str = "ann@example.com",
    password: str = PASSWORD,
    **identifiers: str,
) -> dict[str, Any]:
    response = client.post(
        "/v1/users",
        json={"email": email, "password": password, **identifiers},
        headers=bearer(key.secret),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def log_in(
    client: TestClient,
    tenancy: Tenancy,
    *,
    identifier: str = "ann@example.com",
    password: str = PASSWORD,
    mode: str = "test",
) -> Response:
    return client.post(
        "/v1/sessions",
        json={
            "tenant_id": tenancy.public_id,
            "mode": mode,
            "identifier": identifier,
            "password": password,
        },
    )


def tokens_of(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "authenticated", body
    tokens: dict[str, Any] = body["tokens"]
    return tokens


def signed_in(client: TestClient, tenancy: Tenancy, **identifiers: str) -> dict[str, Any]:
    """A new user, signed up and signed in: their token pair."""
    sign_up(client, tenancy.test_key, **identifiers)
    identifier = identifiers.get("email", "ann@example.com")
    return tokens_of(log_in(client, tenancy, identifier=identifier))


def event_log(database_url: str, tenant_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    """The tenant's security events, oldest first: (type, detail)."""

    async def read(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
        events = await list_security_events(session, tenant_id=tenant_id, limit=500)
        return [(event.event_type, json.loads(event.detail)) for event in reversed(events)]

    return run_in_unit_of_work(database_url, read)


def event_types(database_url: str, tenant_id: uuid.UUID) -> list[str]:
    return [event_type for event_type, _ in event_log(database_url, tenant_id)]


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


class DeviceKey:
    """A device's key pair, as a phone's keystore would hold it."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self.private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "ed25519":
            self.private_key = ed25519.Ed25519PrivateKey.generate()
        else:
            self.private_key = ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> str:
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b64url(der)

    def sign(self, message: bytes) -> str:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return b64url(self.private_key.sign(message))
        return b64url(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))

    def headers(
        self,
        *,
        device_id: str,
        method: str,
        target: str,
        body: bytes,
        timestamp_s: int,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The four signature headers for a request (see `signatures`)."""
        nonce = nonce or secrets.token_urlsafe(18)
        message = request_message(
            device_id=device_id,
            method=method,
            target=target,
            timestamp=str(timestamp_s),
            nonce=nonce,
            body=body,
        )
        return {
            "Billfold-Device-Id": device_id,
            "Billfold-Device-Timestamp": str(timestamp_s),
            "Billfold-Device-Nonce": nonce,
            "Billfold-Device-Signature": self.sign(message),
        }


def bind_device(
    client: TestClient, access_token: str, key: DeviceKey, *, password: str = PASSWORD
) -> dict[str, Any]:
    """Bind ``key`` to the token's user; binding asks for the password again."""
    response = client.post(
        "/v1/me/devices",
        json={
            "name": "Phone",
            "algorithm": key.algorithm,
            "public_key": key.public_key(),
            "password": password,
        },
        headers=bearer(access_token),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def enrol_totp(client: TestClient, access_token: str, clock: ManualClock) -> tuple[str, list[str]]:
    """Enrol TOTP for the token's user (confirming asks for the password again); the seed
    and the recovery codes. The clock moves past the confirming code's step, now spent."""
    headers = bearer(access_token)
    enrolment = client.post("/v1/me/mfa/totp", headers=headers).json()
    secret: str = enrolment["secret"]
    assert enrolment["provisioning_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in enrolment["provisioning_uri"]
    code = totp_code(secret, at_s=clock.now_ns() // NANOSECONDS_PER_SECOND)
    confirmed = client.post(
        "/v1/me/mfa/totp/confirm", json={"code": code, "password": PASSWORD}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    clock.advance(seconds=30)
    return secret, codes
