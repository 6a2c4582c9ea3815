"""Helpers for the events tests: a real HTTP receiver on 127.0.0.1, a worker over a
database, tenants, and rows read back."""

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

from billfold.events.inbound import InboundRegistry
from billfold.events.models import OutboxEvent
from billfold.identity import service as identity_service
from billfold.identity.outbox_events import IDENTITY_EVENT_TYPES
from billfold.kit.clock import Clock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.worker import Worker


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """A webhook receiver: records every request; `reply` decides each answer."""

    def __init__(self, reply: Callable[[Received], Reply] | None = None) -> None:
        self.received: list[Received] = []
        self.reply = reply or (lambda _: Reply())
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                receiver.received.append(request)
                answer = receiver.reply(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *_: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

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
