"""A whole Billfold app for payment scenarios: a tenant, API keys, signed-in users, the
sandbox's notifications recorded and delivered by the test itself, a 1% + 10 fee quoter,
and the books checked after every scenario."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.app import create_app
from billfold.connectors.senders import OutgoingNotification, RecordingSender
from billfold.connectors.types import ProviderResponse
from billfold.events.inbound import InboundProcessor
from billfold.events.models import InboundEvent
from billfold.identity.types import Mode, Scope
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork, parse_database_url
from billfold.kit.ids import parse_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import AccountStatus
from billfold.payments.fees.types import FeeContext, FeeLine, FeeQuote
from billfold.payments.flows import p2p
from billfold.payments.models import Payment
from billfold.payments.runtime import PaymentsRuntime
from identity.identity_support import bootstrap_tenant, create_key
from identity.users.users_support import MASTER_KEY, users_config

PASSWORD = "correct horse battery"
TEST_CARD = "4242424242424242"


async def one_percent_plus_ten(session: AsyncSession, context: FeeContext) -> FeeQuote:
    """A small real fee schedule: 1% (rounded down) + 10 minor units."""
    return FeeQuote(
        lines=(
            FeeLine(
                rule=f"{context.method}_standard",
                description="1% + 10 minor units",
                amount_minor=context.amount_minor // 100 + 10,
                currency=context.currency,
                fixed_minor=10,
            ),
        )
    )


async def three_percent(session: AsyncSession, context: FeeContext) -> FeeQuote:
    """Another schedule, for a price that changed: 3% (rounded down)."""
    return FeeQuote(
        lines=(
            FeeLine(
                rule="three_percent",
                description="3%",
                amount_minor=context.amount_minor * 3 // 100,
                currency=context.currency,
            ),
        )
    )


def internal_id(public_id: str) -> uuid.UUID:
    """The internal id behind a public one (`pay_…`, `usr_…`), as the flows take it."""
    return uuid.UUID(hex=public_id.partition("_")[2])


class CrashError(Exception):
    """The process dies here (a test's stand-in for a crash)."""


def crashing(real: Any, *, after_ledger: bool, first_step: str = "") -> Any:
    """A flow's `apply_steps` that dies on a chain whose first step starts with
    `first_step` (on every chain when it is empty): after the ledger applied the chain, or
    before; other chains are applied as usual."""

    async def apply_steps(runtime: Any, owner_id: uuid.UUID, steps: Any) -> Any:
        if first_step and not (steps and steps[0][0].startswith(first_step)):
            return await real(runtime, owner_id, steps)
        if after_ledger:
            await real(runtime, owner_id, steps)
        raise CrashError

    return apply_steps


def fee_of(amount: int) -> int:
    return amount // 100 + 10


WAIT_ROUNDS_MAX = 2_000


def process_inbound(client: TestClient, database_url: str, ids: Iterable[str] = ()) -> None:
    """Run the inbound processor (as the worker would) until nothing is due, and until the
    notifications `ids` (`ntf_…`) are no longer waiting: an embedded worker may hold one."""
    app: Any = client.app
    unit_of_work: UnitOfWork = app.state.unit_of_work
    processor = InboundProcessor(
        unit_of_work,
        app.state.inbound,
        clock=SystemClock(),
        row_locks=parse_database_url(database_url).kind == "postgresql",
        batch_size_max=100,
    )
    waiting = [uuid.UUID(hex=public.partition("_")[2]) for public in ids]

    async def drain() -> None:
        for _ in range(WAIT_ROUNDS_MAX):
            done = await processor.run_once()
            async with unit_of_work.read() as session:
                rows = [await session.get(InboundEvent, row_id) for row_id in waiting]
            if not done and all(row is not None and row.status != "received" for row in rows):
                return
            if not done:
                await asyncio.sleep(0.01)
        raise AssertionError(f"inbound notifications still waiting: {waiting}")

    client.portal.call(drain)


@dataclass(frozen=True)
class User:
    id: str
    token: str
    handle: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class World:
    """One tenant's payments world on `database_url`."""

    def __init__(self, database_url: str, *, fees: bool = True, **settings: Any) -> None:
        self.sender = RecordingSender()
        merged: dict[str, Any] = {"ledger_batch_window_ms": 0, "master_key": MASTER_KEY, **settings}
        self.app = create_app(Settings(database_url=database_url, **merged))
        self.app.state.notification_sender = self.sender
        self.app.state.users_config = users_config()
        self.fees = fees
        self.database_url = database_url
        tenant = bootstrap_tenant(database_url, name=f"Pay {uuid.uuid4().hex[:6]}")
        self.tenant_id = tenant.tenant.id
        self.key = create_key(database_url, tenant_id=self.tenant_id, scopes=list(Scope)).secret
        self._counter = 0

    def __enter__(self) -> World:
        self.client = TestClient(self.app).__enter__()
        if self.fees:
            self.runtime.fee_quoter = one_percent_plus_ten
        return self

    def __exit__(self, *exc: object) -> None:
        """Every scenario ends with its books checked (issue 4: after every scenario test,
        `ledger verify` passes and per currency the balances sum to zero)."""
        try:
            if exc[0] is None:
                self.assert_books()
        finally:
            self.client.__exit__(*exc)

    @property
    def runtime(self) -> PaymentsRuntime:
        runtime: PaymentsRuntime = self.app.state.payments
        return runtime

    @property
    def ledger(self) -> Ledger:
        ledger: Ledger = self.app.state.ledger
        return ledger

    @property
    def api(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @functools.cached_property
    def live_key(self) -> str:
        """An API key of the tenant's live mode with every scope, made on first use."""
        created = create_key(
            self.database_url, tenant_id=self.tenant_id, scopes=list(Scope), mode=Mode.LIVE
        )
        return created.secret

    # -- people

    def user(self, *, phone: str | None = None, mode: Mode = Mode.TEST) -> User:
        """A signed-up, signed-in end user of the tenant in `mode`."""
        self._counter += 1
        handle = f"user{self._counter}_{uuid.uuid4().hex[:6]}"
        body: dict[str, Any] = {"handle": handle, "password": PASSWORD}
        if phone is not None:
            body["phone"] = phone
        key = self.key if mode is Mode.TEST else self.live_key
        created = self.client.post(
            "/v1/users", json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert created.status_code == 201, created.text
        login = self.client.post(
            "/v1/sessions",
            json={
                "tenant_id": f"ten_{self.tenant_id.hex}",
                "mode": mode.value,
                "identifier": handle,
                "password": PASSWORD,
            },
        )
        assert login.status_code == 200, login.text
        token = login.json()["tokens"]["access_token"]
        return User(id=created.json()["id"], token=token, handle=handle)

    def merchant(self, currency: str = "USD") -> str:
        response = self.client.post(
            "/v1/merchants",
            json={
                "legal_name": "Corner Shop Ltd",
                "category_code": "5411",
                "settlement_currency": currency,
            },
            headers=self.api,
        )
        assert response.status_code == 201, response.text
        merchant_id: str = response.json()["id"]
        return merchant_id

    # -- the sandbox's notifications

    def post_notification(self, notification: OutgoingNotification) -> Response:
        """Post one notification: stored (202), not applied until the worker runs."""
        response = self.client.post(
            f"/v1/connectors/{notification.provider}/notifications",
            content=notification.body,
            headers={**notification.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 202, response.text
        return response

    def process_inbound(self, ids: Iterable[str] = ()) -> None:
        process_inbound(self.client, self.database_url, ids)

    def post_and_process(self, notification: OutgoingNotification) -> str:
        """Post one notification and run the inbound processor once over what is due: its
        id."""
        notification_id: str = self.post_notification(notification).json()["notification_id"]
        self.process_inbound()
        return notification_id

    def inbound_row(self, notification_id: str) -> InboundEvent:
        async def read() -> InboundEvent:
            async with self.runtime.unit_of_work.read() as session:
                row = await session.get(InboundEvent, internal_id(notification_id))
                assert row is not None
                return row

        return self.client.portal.call(read)

    def retry_inbound_now(self, notification_id: str) -> None:
        """Its next attempt is due now (as if the retry schedule's wait went by); processed."""

        async def due() -> None:
            async with self.runtime.unit_of_work.begin() as session:
                await session.execute(
                    update(InboundEvent)
                    .where(InboundEvent.id == internal_id(notification_id))
                    .values(next_attempt_at=0)
                )

        self.client.portal.call(due)
        self.process_inbound()

    def reconcile_due(self, payment_id: str) -> None:
        """Reconciliation is due: the provider was last asked about the payment (or it last
        changed) a little longer ago than the reconciliation age."""
        age_ns = int((self.runtime.reconcile_after_s + 1) * 1_000_000_000)

        async def write() -> None:
            async with self.runtime.unit_of_work.begin() as session:
                await session.execute(
                    update(Payment)
                    .where(Payment.id == internal_id(payment_id))
                    .values(updated_at=time.time_ns() - age_ns)
                )

        self.client.portal.call(write)

    def watch_status(
        self, provider: str, answer: Callable[[ProviderResponse | None], Any] | None = None
    ) -> list[str]:
        """Every reference the provider's `status` is asked about from now on (what it
        answers passed through `answer`, when given)."""
        sandbox: Any = self.runtime.sandboxes[provider]
        real = sandbox.status
        asked: list[str] = []

        async def status(reference: str) -> ProviderResponse | None:
            asked.append(reference)
            response: ProviderResponse | None = await real(reference)
            return response if answer is None else answer(response)

        sandbox.status = status
        return asked

    def deliver(self, notifications: list[OutgoingNotification] | None = None) -> list[Response]:
        """Post the notifications (by default every one waiting) to the inbound endpoint,
        each processed by the inbound processor before the next is posted (in order)."""
        batch = self.sender.take() if notifications is None else notifications
        responses = []
        for notification in batch:
            response = self.post_notification(notification)
            self.process_inbound([response.json()["notification_id"]])
            responses.append(response)
        return responses

    # -- money

    def top_up(self, user: User, amount: int, *, card: str = TEST_CARD, **fields: Any) -> Response:
        body = {"amount": amount, "currency": "USD", "method": "card", "instrument": card}
        return self.client.post("/v1/me/top-ups", json={**body, **fields}, headers=user.auth)

    def fund(self, user: User, amount: int) -> dict[str, Any]:
        """Top up `user` by card so that `amount` (after the top-up fee) is available."""
        gross = amount
        while self.fees and gross - fee_of(gross) < amount:
            gross += 1
        response = self.top_up(user, gross)
        assert response.status_code == 201, response.text
        self.deliver()
        payment = self.payment(response.json()["id"])
        assert payment["state"] == "succeeded", payment
        return payment

    def race_p2p(self, sender: User, recipient: User, *, amount: int, count: int) -> list[Any]:
        """`count` P2P sends of `amount` USD from `sender` to `recipient` at once, through
        the flow itself (on PostgreSQL, concurrent transactions): each one's payment or
        exception."""

        async def race() -> list[Any]:
            sends = [
                p2p.send_p2p(
                    self.runtime,
                    tenant_id=self.tenant_id,
                    mode=Mode.TEST,
                    sender_id=internal_id(sender.id),
                    recipient=recipient.handle,
                    amount=amount,
                    currency="USD",
                )
                for _ in range(count)
            ]
            return list(await asyncio.gather(*sends, return_exceptions=True))

        outcomes: list[Any] = self.client.portal.call(race)  # type: ignore[attr-defined]
        return outcomes

    def paid(self, user: User, merchant_id: str, amount: int) -> dict[str, Any]:
        """A merchant payment of `amount` USD that `user` authorized and that was captured
        at once."""
        body = {
            "merchant_id": merchant_id,
            "amount": amount,
            "currency": "USD",
            "capture": "automatic",
        }
        created = self.client.post("/v1/payments", json=body, headers=self.api).json()
        done = self.client.post(f"/v1/me/payments/{created['id']}/authorize", headers=user.auth)
        assert done.json()["state"] == "captured", done.text
        paid: dict[str, Any] = done.json()
        return paid

    def payment(self, payment_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/payments/{payment_id}", headers=self.api)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def set_wallet_status(self, wallet_id: str, status: AccountStatus) -> None:
        """Freeze or thaw a wallet (`wal_…`) in the ledger, as an operator would."""
        self.client.portal.call(
            functools.partial(
                self.ledger.set_account_status,
                tenant_id=_ledger_tenant(self.tenant_id),
                account_id=parse_id("wal", wallet_id),
                status=status,
            )
        )

    def wallet(self, user: User, currency: str = "USD") -> dict[str, int]:
        response = self.client.get("/v1/me/wallets", headers=user.auth)
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            if item["currency"] == currency:
                return {name: int(item[name]) for name in ("available", "pending", "held")}
        return {"available": 0, "pending": 0, "held": 0}

    def merchant_wallet(self, merchant_id: str, currency: str = "USD") -> dict[str, int]:
        response = self.client.get(f"/v1/merchants/{merchant_id}/wallets", headers=self.api)
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            if item["currency"] == currency:
                return {name: int(item[name]) for name in ("available", "pending", "held")}
        return {"available": 0, "pending": 0, "held": 0}

    def system(self, name: str, currency: str = "USD") -> dict[str, int]:
        response = self.client.get(
            "/v1/system-accounts", params={"currency": currency}, headers=self.api
        )
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            if item["name"] == name:
                fields = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
                return {field: int(item[field]) for field in fields}
        raise AssertionError(f"no system account {name}")

    def outbox(self, payment_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The (type, data) of every event whose aggregate is the payment, in order."""
        from sqlalchemy import select

        from billfold.events.models import OutboxEvent

        async def read() -> list[tuple[str, dict[str, Any]]]:
            async with self.runtime.unit_of_work.begin() as session:
                rows = await session.execute(
                    select(OutboxEvent.type, OutboxEvent.data)
                    .where(OutboxEvent.aggregate_id == internal_id(payment_id))
                    .order_by(OutboxEvent.id)
                )
                return [(str(row.type), dict(row.data)) for row in rows]

        return self.client.portal.call(read)

    def lapse_authorization(self, payment_id: str) -> None:
        """The payment's authorization is past its expiry (as if its hold time went by)."""
        from billfold.payments.models import Payment

        async def lapse() -> None:
            async with self.runtime.unit_of_work.begin() as session:
                row = await session.get(Payment, internal_id(payment_id))
                assert row is not None
                row.authorization_expires_at = 1

        self.client.portal.call(lapse)

    def resume_interrupted(self) -> None:
        """Recovery's sweep, at once (no grace for flows still in flight)."""
        from billfold.payments.flows import recovery

        self.client.portal.call(
            functools.partial(recovery.resume_interrupted, self.runtime, older_than_s=0)
        )

    # -- the books

    def assert_books(self) -> None:
        """`ledger verify` passes, and per currency this tenant's balances sum to zero."""
        report = self.client.portal.call(functools.partial(self.ledger.verify, grace_s=60))
        assert report.ok, report.problems
        page = self.client.portal.call(
            functools.partial(
                self.ledger.list_accounts,
                tenant_id=_ledger_tenant(self.tenant_id),
                limit=8190,
            )
        )
        posted: dict[str, int] = defaultdict(int)
        pending: dict[str, int] = defaultdict(int)
        for account in page.items:
            posted[account.ledger] += account.credits_posted - account.debits_posted
            pending[account.ledger] += account.credits_pending - account.debits_pending
        assert all(value == 0 for value in posted.values()), posted
        assert all(value == 0 for value in pending.values()), pending


def _ledger_tenant(tenant_id: uuid.UUID) -> uuid.UUID:
    from billfold.wallets.service import ledger_tenant_of

    return ledger_tenant_of(tenant_id, "test")


def problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body
