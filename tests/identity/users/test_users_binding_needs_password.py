"""Adding an authentication element asks for the password again (PSD2 RTS: binding an
element is itself under the user's authentication): a stolen access token alone cannot
bind a device, enrol TOTP or register a passkey, and so cannot pass step-up or sign-in.

Each route is probed as ``/v1/me/mfa/recovery-codes`` already is: without the password
the request is invalid (422), a wrong one is refused like a wrong sign-in (401
``invalid_credentials``, ``login.failed`` at stage ``reauthentication``) and counts towards
the account lock; neither binds anything; the right one works."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from billfold.identity.users.lockout import LOGIN_FAILURES_MAX
from billfold.identity.users.totp import totp_code
from billfold.kit.clock import NANOSECONDS_PER_SECOND, ManualClock
from identity.users.software_authenticator import SoftwareAuthenticator
from identity.users.users_support import (
    ORIGIN,
    PASSWORD,
    RELYING_PARTY,
    DeviceKey,
    Tenancy,
    assert_problem,
    bearer,
    event_log,
    log_in,
    new_tenancy,
    signed_in,
    users_app,
    users_client,
    users_config,
)

WRONG_PASSWORD = "not the password"


class _Element:
    """One way of adding an authentication element: ``post`` sends the request that adds
    it (with ``password``, or none when ``None``); ``bound`` says what the user holds."""

    def __init__(self, client: TestClient, access_token: str, clock: ManualClock) -> None:
        self.client = client
        self.headers = bearer(access_token)
        self.clock = clock

    def post(self, password: str | None) -> Response:
        raise NotImplementedError

    def bound(self) -> list[Any]:
        raise NotImplementedError

    def _with(self, body: dict[str, Any], password: str | None) -> dict[str, Any]:
        return body if password is None else {**body, "password": password}


class _Device(_Element):
    def __init__(self, client: TestClient, access_token: str, clock: ManualClock) -> None:
        super().__init__(client, access_token, clock)
        self.key = DeviceKey("ed25519")

    def post(self, password: str | None) -> Response:
        body = {"name": "Phone", "algorithm": "ed25519", "public_key": self.key.public_key()}
        return self.client.post(
            "/v1/me/devices", json=self._with(body, password), headers=self.headers
        )

    def bound(self) -> list[Any]:
        items: list[Any] = self.client.get("/v1/me/devices", headers=self.headers).json()["items"]
        return items


class _Totp(_Element):
    def __init__(self, client: TestClient, access_token: str, clock: ManualClock) -> None:
        super().__init__(client, access_token, clock)
        started = client.post("/v1/me/mfa/totp", headers=self.headers)
        assert started.status_code == 200, started.text
        self.secret: str = started.json()["secret"]

    def post(self, password: str | None) -> Response:
        code = totp_code(self.secret, at_s=self.clock.now_ns() // NANOSECONDS_PER_SECOND)
        return self.client.post(
            "/v1/me/mfa/totp/confirm",
            json=self._with({"code": code}, password),
            headers=self.headers,
        )

    def bound(self) -> list[Any]:
        methods: list[Any] = self.client.get("/v1/me", headers=self.headers).json()["mfa_methods"]
        return methods


class _Passkey(_Element):
    def __init__(self, client: TestClient, access_token: str, clock: ManualClock) -> None:
        super().__init__(client, access_token, clock)
        authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
        options = client.post("/v1/me/passkeys/options", headers=self.headers)
        assert options.status_code == 200, options.text
        # One credential for every attempt: a refused attempt must not spend the challenge.
        self.credential = authenticator.create(options.json()["options"])

    def post(self, password: str | None) -> Response:
        body = {"name": "Laptop", "credential": self.credential}
        return self.client.post(
            "/v1/me/passkeys", json=self._with(body, password), headers=self.headers
        )

    def bound(self) -> list[Any]:
        items: list[Any] = self.client.get("/v1/me/passkeys", headers=self.headers).json()["items"]
        return items


ELEMENTS: dict[str, tuple[Callable[[TestClient, str, ManualClock], _Element], int, str]] = {
    "device": (_Device, 201, "device.bound"),
    "totp": (_Totp, 200, "mfa.enrolled"),
    "passkey": (_Passkey, 201, "passkey.registered"),
}


def _reauthentication_failures(database_url: str, tenancy: Tenancy) -> list[dict[str, Any]]:
    return [
        detail
        for event_type, detail in event_log(database_url, tenancy.tenant_id)
        if event_type == "login.failed" and detail["stage"] == "reauthentication"
    ]


def _events(database_url: str, tenancy: Tenancy) -> list[str]:
    return [event_type for event_type, _ in event_log(database_url, tenancy.tenant_id)]


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_adding_an_element_needs_the_password(database_url: str, element: str) -> None:
    make, created_status, bound_event = ELEMENTS[element]
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        adding = make(client, tokens["access_token"], clock)
        without = adding.post(None)
        empty = adding.post("")
        wrong = adding.post(WRONG_PASSWORD)
        bound_before = adding.bound()
        events_before = _events(database_url, tenancy)
        right = adding.post(PASSWORD)
        bound_after = adding.bound()
    assert_problem(without, 422, "validation_failed")
    assert_problem(empty, 422, "validation_failed")
    assert_problem(wrong, 401, "invalid_credentials")
    assert bound_before == []
    assert bound_event not in events_before
    assert right.status_code == created_status, right.text
    assert len(bound_after) >= 1
    assert bound_event in _events(database_url, tenancy)
    failures = _reauthentication_failures(database_url, tenancy)
    assert failures == [{"reason": "wrong_password", "stage": "reauthentication", "locked": False}]


@pytest.mark.parametrize("element", list(ELEMENTS))
def test_wrong_passwords_count_towards_the_account_lock(database_url: str, element: str) -> None:
    make, _created_status, bound_event = ELEMENTS[element]
    tenancy = new_tenancy(database_url)
    clock = ManualClock()
    with users_client(database_url, users_config(clock)) as client:
        tokens = signed_in(client, tenancy)
        adding = make(client, tokens["access_token"], clock)
        wrong = [adding.post(WRONG_PASSWORD) for _ in range(LOGIN_FAILURES_MAX)]
        right_while_locked = adding.post(PASSWORD)
        sign_in_while_locked = log_in(client, tenancy)
        bound = adding.bound()
    for response in [*wrong, right_while_locked, sign_in_while_locked]:
        assert_problem(response, 401, "invalid_credentials")
    assert bound == []
    assert bound_event not in _events(database_url, tenancy)
    failures = _reauthentication_failures(database_url, tenancy)
    assert [d["reason"] for d in failures] == ["wrong_password"] * LOGIN_FAILURES_MAX + ["locked"]
    assert [d["locked"] for d in failures] == [False] * (LOGIN_FAILURES_MAX - 1) + [True, True]


def test_the_openapi_document_requires_the_password(database_url: str) -> None:
    app = users_app(database_url, users_config())
    document = app.openapi()
    routes = ["/v1/me/devices", "/v1/me/mfa/totp/confirm", "/v1/me/passkeys"]
    for path in routes:
        operation = document["paths"][path]["post"]
        assert "the password is asked again" in operation["summary"], path
        reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = document["components"]["schemas"][reference.rsplit("/", 1)[-1]]
        assert "password" in schema["required"], path
