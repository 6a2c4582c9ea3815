"""Helpers for operator tests: tenants, operators and sessions made through the services
(with cheap Argon2 parameters), ledger accounts, and an app client with the operators'
router and the ledger-backed approval executors installed."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.app import create_app
from billfold.flows.approvals import approval_executors, ledger_tenant_id
from billfold.identity.operators import service
from billfold.identity.operators.permissions import Role
from billfold.identity.operators.types import Actor, OperatorPrincipal
from billfold.identity.passwords import PasswordParameters, passwords_for
from billfold.identity.service import BootstrappedTenant
from billfold.identity.types import Mode
from billfold.identity.users.models import EndUser
from billfold.kit.ids import format_id, new_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import NewAccount
from conftest import open_ledger
from identity.identity_support import bootstrap_tenant, run_in_unit_of_work

T = TypeVar("T")

FAST_PASSWORDS = passwords_for(PasswordParameters(time_cost=1, memory_cost_kib=8, parallelism=1))
"""Cheap Argon2id for tests: a hash carries its parameters, so sign-in verifies it cheaply."""
PASSWORD = "correct horse battery staple"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """An operator and a live session token for it."""

    operator_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    token: str

    @property
    def public_id(self) -> str:
        return format_id("opr", self.operator_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_tenant(database_url: str) -> BootstrappedTenant:
    return bootstrap_tenant(database_url, name="Back office")


def create_operator(
    database_url: str,
    *,
    tenant_id: uuid.UUID,
    roles: Sequence[Role],
    email: str | None = None,
    password: str | None = PASSWORD,
) -> service.CreatedOperator:
    address = email or f"{uuid.uuid4().hex[:12]}@example.com"
    return run_in_unit_of_work(
        database_url,
        lambda session: service.create_operator(
            session,
            tenant_id=tenant_id,
            email=address,
            display_name=address,
            roles=roles,
            password=password,
            actor=Actor.system(),
            now_ns=time.time_ns(),
            passwords=FAST_PASSWORDS,
        ),
    )


def sign_in(database_url: str, *, tenant_id: uuid.UUID, email: str) -> str:
    login = run_in_unit_of_work(
        database_url,
        lambda session: service.log_in(
            session,
            tenant_id=tenant_id,
            email=email,
            password=PASSWORD,
            now_ns=time.time_ns(),
            passwords=FAST_PASSWORDS,
        ),
    )
    assert login is not None
    return login.token


def operator(database_url: str, *, tenant_id: uuid.UUID, roles: Sequence[Role]) -> SignedIn:
    """A new operator with ``roles`` (its password its own), signed in."""
    created = create_operator(database_url, tenant_id=tenant_id, roles=roles)
    email = created.operator.email
    token = sign_in(database_url, tenant_id=tenant_id, email=email)
    return SignedIn(operator_id=created.operator.id, tenant_id=tenant_id, email=email, token=token)


def end_user(database_url: str, *, tenant_id: uuid.UUID, mode: Mode = Mode.TEST) -> str:
    """A new end user of the tenant (who never signs in), by its public id: the subject a
    limit increase must name."""
    user_id = new_id()

    async def add(session: AsyncSession) -> None:
        session.add(
            EndUser(
                id=user_id,
                tenant_id=tenant_id,
                mode=mode.value,
                email=None,
                phone=None,
                handle=f"holder_{user_id.hex[-12:]}",
                password_hash=await FAST_PASSWORDS.hash(PASSWORD),
                status="active",
                failed_login_count=0,
                locked_until=None,
                created_at=time.time_ns(),
            )
        )

    run_in_unit_of_work(database_url, add)
    return format_id("usr", user_id)


def principal_of(database_url: str, signed_in: SignedIn) -> OperatorPrincipal:
    return run_in_unit_of_work(
        database_url,
        lambda session: service.verify_session(
            session, token=signed_in.token, now_ns=time.time_ns()
        ),
    )


async def open_accounts(
    ledger: Ledger, *, tenant_id: uuid.UUID, count: int, mode: Mode = Mode.TEST
) -> list[uuid.UUID]:
    """``count`` USD accounts in the tenant's ledger for ``mode``, no balance limits."""
    ids = [uuid.uuid4() for _ in range(count)]
    results = await ledger.create_accounts(
        [
            NewAccount(id=i, tenant_id=ledger_tenant_id(tenant_id, mode), ledger="USD", code=1)
            for i in ids
        ]
    )
    assert [result.status.value for result in results] == ["ok"] * count
    return ids


async def balances(
    ledger: Ledger, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID], mode: Mode = Mode.TEST
) -> list[tuple[int, int]]:
    """(debits_posted, credits_posted) of each account, read through the ledger facade."""
    accounts = await ledger.lookup_accounts(
        tenant_id=ledger_tenant_id(tenant_id, mode), ids=list(ids)
    )
    return [(account.debits_posted, account.credits_posted) for account in accounts]


def with_ledger(database_url: str, action: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run ``action`` with a Ledger facade of its own, opened on the same database."""

    async def run() -> T:
        ledger = await open_ledger(database_url, ledger_batch_window_ms=0)
        try:
            return await action(ledger)
        finally:
            await ledger.close()

    return asyncio.run(run())


def adjustment(
    debit_id: uuid.UUID, credit_id: uuid.UUID, amount: int | str = 500, mode: str = "test"
) -> dict[str, object]:
    """The body of a ledger adjustment request."""
    return {
        "action_type": "ledger_adjustment",
        "reason": "Correct a misposted top-up",
        "payload": {
            "mode": mode,
            "debit_account_id": format_id("acc", debit_id),
            "credit_account_id": format_id("acc", credit_id),
            "amount": amount,
            "asset": "USD",
        },
    }


def operators_app(database_url: str) -> FastAPI:
    """The whole application, the operators' router included."""
    master_key = base64.b64encode(os.urandom(32)).decode()  # key rotations need a root key
    return create_app(Settings(database_url=database_url, master_key=master_key))  # type: ignore[arg-type]


@contextmanager
def operator_client(database_url: str, *, ledger_executors: bool = True) -> Iterator[TestClient]:
    """A client for the whole app, lifespan included, with the ledger executors installed
    as the application wiring does (``ledger_executors=False`` leaves identity's own)."""
    with TestClient(operators_app(database_url)) as client:
        state = client.app.state  # type: ignore[attr-defined]
        if ledger_executors:
            state.approval_executors = approval_executors(
                state.ledger, state.keyring, state.unit_of_work
            )
        elif hasattr(state, "approval_executors"):
            del state.approval_executors
        yield client
