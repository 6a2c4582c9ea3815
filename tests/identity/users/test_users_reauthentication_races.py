"""An authentication element added while the user is being erased (both backends).

Binding a device or registering a passkey asks for the password again, which takes the
Argon2 time; an erasure committed meanwhile (the request's access token was checked
before it) must not be followed by the new element under the name the user chose: either
the element commits first and the erasure renames it, or the action sees the erasure and
is refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from billfold.app import create_app
from billfold.identity.passwords import PasswordParameters
from billfold.identity.users.models import Device, EndUser, Passkey
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import parse_id
from identity.users.software_authenticator import SoftwareAuthenticator
from identity.users.users_support import (
    ORIGIN,
    PASSWORD,
    RELYING_PARTY,
    DeviceKey,
    assert_problem,
    bearer,
    users_config,
)
from privacy.privacy_support import auth, new_privacy_tenant, privacy_settings, signed_in_user

# Slow enough that the erasure lands while the password is checked (a fraction of a second).
SLOW_PASSWORDS = PasswordParameters(time_cost=6, memory_cost_kib=65536, parallelism=1)


@contextmanager
def _client(database_url: str) -> Iterator[TestClient]:
    app = create_app(privacy_settings(database_url))
    app.state.users_config = users_config(password_parameters=SLOW_PASSWORDS)
    with TestClient(app) as client:
        yield client


def _bind_device(client: TestClient, access: str, name: str) -> Callable[[], Response]:
    body = {
        "name": name,
        "algorithm": "ed25519",
        "public_key": DeviceKey("ed25519").public_key(),
        "password": PASSWORD,
    }
    return lambda: client.post("/v1/me/devices", json=body, headers=bearer(access))


def _register_passkey(client: TestClient, access: str, name: str) -> Callable[[], Response]:
    options = client.post("/v1/me/passkeys/options", headers=bearer(access))
    assert options.status_code == 200, options.text
    authenticator = SoftwareAuthenticator(rp_id=RELYING_PARTY.id, origin=ORIGIN)
    body = {
        "name": name,
        "credential": authenticator.create(options.json()["options"]),
        "password": PASSWORD,
    }
    return lambda: client.post("/v1/me/passkeys", json=body, headers=bearer(access))


def _wait_for_reserved_attempt(database_url: str, user_id: uuid.UUID) -> None:
    """Until the action counted its password check (committed just before the action's own
    unit of work starts, which then spends the Argon2 time)."""

    async def poll() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                async with UnitOfWork(engine).read() as session:
                    count = (
                        await session.execute(
                            select(EndUser.failed_login_count).where(EndUser.id == user_id)
                        )
                    ).scalar_one()
                if count > 0:
                    return
                await asyncio.sleep(0.005)
            raise AssertionError("the action never counted its password check")
        finally:
            await engine.dispose()

    asyncio.run(poll())


def _names(database_url: str, user_id: uuid.UUID) -> list[str]:
    async def read() -> list[str]:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).read() as session:
                devices = await session.execute(
                    select(Device.name).where(Device.user_id == user_id)
                )
                passkeys = await session.execute(
                    select(Passkey.name).where(Passkey.user_id == user_id)
                )
                return [*devices.scalars(), *passkeys.scalars()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize("enrol", [_bind_device, _register_passkey], ids=["device", "passkey"])
def test_an_element_added_during_an_erasure_keeps_no_chosen_name(
    database_url: str, enrol: Callable[[TestClient, str, str], Callable[[], Response]]
) -> None:
    tenant = new_privacy_tenant(database_url)
    chosen = f"Jane's phone {uuid.uuid4().hex[:8]}"
    with _client(database_url) as client:
        user, access, _ = signed_in_user(client, tenant.writer)
        user_id = parse_id("usr", user)
        action = enrol(client, access, chosen)
        answers: list[Response] = []
        adding = threading.Thread(target=lambda: answers.append(action()))
        adding.start()
        try:
            _wait_for_reserved_attempt(database_url, user_id)
            erased = client.post(f"/v1/users/{user}/erasure", headers=auth(tenant.reader))
        finally:
            adding.join(timeout=60)
    assert erased.status_code == 200, erased.text
    (answer,) = answers
    names = _names(database_url, user_id)
    assert chosen not in names, (answer.status_code, names)
    if answer.status_code == 201:  # it committed first: the erasure renamed it
        assert names == ["erased"]
    else:  # the erasure committed first: the action saw it and was refused
        assert_problem(answer, 401, "unauthorized")
        assert names == []
