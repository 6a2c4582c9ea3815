"""Helpers for the events tests: a real HTTP receiver on 127.0.0.1, a worker over a
database, tenants, webhook endpoints, emitted events, and rows read back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from billfold.events import service
from billfold.events.inbound import InboundRegistry
from billfold.events.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from billfold.events.outbox import emit
from billfold.identity import service as identity_service
from billfold.identity.outbox_events import IDENTITY_EVENT_TYPES
from billfold.kit.auth import LEDGER_TENANT_NAMESPACE, Mode
from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.types import CreateTransferStatus, NewAccount, NewTransfer
from billfold.worker import Worker


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] = ("", 0)
    """The sender's end of the connection: two requests from one port shared it."""


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    drip_s: float = 0.0
    """When above 0: the body is sent a byte at a time, this long apart."""


class Receiver:
    """A webhook receiver: records every request; `reply` decides each answer."""

    def __init__(
        self, reply: Callable[[Received], Reply] | None = None, *, keep_alive: bool = False
    ) -> None:
        """`keep_alive`: answer in HTTP/1.1 and keep connections open (HTTP/1.0 closes
        each after its answer, so a sender can reuse none)."""
        self.received: list[Received] = []
        self.reply = reply or (lambda _: Reply())
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    (str(self.client_address[0]), int(self.client_address[1])),
                )
                receiver.received.append(request)
                answer = receiver.reply(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                if not answer.drip_s:
                    self.wfile.write(answer.body)
                    return
                for index in range(len(answer.body)):
                    time.sleep(answer.drip_s)
                    self.wfile.write(answer.body[index : index + 1])
                    self.wfile.flush()

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Harness:
    settings: Settings
    unit_of_work: UnitOfWork
    ledger: Ledger
    worker: Worker
    tenant_id: uuid.UUID


@asynccontextmanager
async def harness(
    database_url: str,
    *,
    clock: Clock | None = None,
    ledger_clock: Clock | None = None,
    inbound: InboundRegistry | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """A worker (not started: tests step it) over `database_url`, a ledger, and a tenant."""
    merged = {"ledger_batch_window_ms": 0, "webhooks_allow_private": True, **settings}
    config = Settings(database_url=database_url, **merged)
    engine = create_engine(parse_database_url(database_url), pool_size=4)
    unit_of_work = UnitOfWork(engine)
    ledger = Ledger.from_settings(config, clock=ledger_clock)
    await ledger.open()
    worker = Worker(config, unit_of_work=unit_of_work, ledger=ledger, clock=clock, inbound=inbound)
    try:
        await worker.prepare()
        async with unit_of_work.begin() as session:
            tenant = await identity_service.bootstrap_tenant(
                session, name="Events", now_ns=time.time_ns()
            )
        # Bootstrapping made the tenant's API keys, whose events (api_key.created) are
        # dispatched now: each test starts from a log with nothing left to deliver.
        await worker.drain()
        yield Harness(config, unit_of_work, ledger, worker, tenant.tenant.id)
    finally:
        await worker.stop()
        await ledger.close()
        await engine.dispose()


async def tenant_event_ids(
    unit_of_work: UnitOfWork, tenant_id: uuid.UUID, *, identity: bool = False
) -> list[uuid.UUID]:
    """The tenant's events in log order, less identity's (the bootstrap's API keys); with
    `identity`, identity's alone."""
    kinds = list(IDENTITY_EVENT_TYPES)
    async with unit_of_work.begin() as session:
        rows = await session.scalars(
            select(OutboxEvent.id)
            .where(
                OutboxEvent.tenant_id == tenant_id,
                OutboxEvent.type.in_(kinds) if identity else OutboxEvent.type.not_in(kinds),
            )
            .order_by(OutboxEvent.seq)
        )
        return list(rows)


def scope(h: Harness) -> service.Scope:
    return service.Scope(tenant_id=h.tenant_id, mode=Mode.TEST)


async def add_endpoint(
    h: Harness, url: str, *, event_types: list[str] | None = None, batch_size_max: int = 1
) -> WebhookEndpoint:
    async with h.unit_of_work.begin() as session:
        return await service.create_endpoint(
            session,
            scope=scope(h),
            url=url,
            description="test",
            event_types=event_types or [],
            allow_private=True,
            endpoints_max=20,
            now_ns=time.time_ns(),
            batch_size_max=batch_size_max,
        )


async def emit_event(
    h: Harness, *, aggregate: uuid.UUID | None = None, kind: str = "payment.captured"
) -> uuid.UUID:
    aggregate = aggregate or new_id()
    async with h.unit_of_work.begin() as session:
        return emit(
            session,
            tenant_id=h.tenant_id,
            mode=Mode.TEST,
            type=f"com.billfold.{kind}.v1",
            subject=f"pay_{aggregate.hex}",
            aggregate_id=aggregate,
            data={"amount": "250", "currency": "EUR"},
        )


async def deliveries(h: Harness) -> list[WebhookDelivery]:
    async with h.unit_of_work.begin() as session:
        return list(
            await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.event_seq))
        )


def ledger_tenant(tenant_id: uuid.UUID, mode: Mode = Mode.TEST) -> uuid.UUID:
    return uuid.uuid5(LEDGER_TENANT_NAMESPACE, f"{tenant_id}:{mode.value}")


async def open_accounts(h: Harness, count: int = 2) -> list[uuid.UUID]:
    ids = [new_id() for _ in range(count)]
    tenant = ledger_tenant(h.tenant_id)
    results = await h.ledger.create_accounts(
        [NewAccount(id=i, tenant_id=tenant, ledger="USD", code=1) for i in ids]
    )
    assert all(r.status.value == "ok" for r in results)
    return ids


async def transfer(h: Harness, debit: uuid.UUID, credit: uuid.UUID, **fields: object) -> uuid.UUID:
    identifier = new_id()
    new = NewTransfer(
        id=identifier,
        tenant_id=ledger_tenant(h.tenant_id),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=fields.pop("amount", 10),  # type: ignore[arg-type]
        ledger="USD",
        code=1,
        **fields,  # type: ignore[arg-type]
    )
    [result] = await h.ledger.create_transfers([new])
    assert result.status is CreateTransferStatus.OK, result
    return identifier


@asynccontextmanager
async def answered_once(
    database_url: str, clock: Clock, receiver: Receiver, **settings: Any
) -> AsyncIterator[tuple[Harness, WebhookEndpoint]]:
    """A worker whose one endpoint, at `receiver`, was sent a first event (and answered)."""
    async with harness(database_url, clock=clock, **settings) as h:
        endpoint = await add_endpoint(h, receiver.url)
        await emit_event(h)
        await h.worker.drain()
        yield h, endpoint


async def endpoint_row(h: Harness, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The endpoint as stored now."""
    async with h.unit_of_work.read() as session:
        found = await session.get(WebhookEndpoint, endpoint_id)
        assert found is not None
        return found
