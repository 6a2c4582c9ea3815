"""The whole simulation against an application in this process: no server, no sockets.

    from billfold.app import create_app
    from billfold.risk.simulator.generator import SimulationConfig
    from billfold.risk.simulator.in_process import simulate_in_process

    app = create_app(Settings(database_url=…, embedded_worker=False,
                              rate_limit_sign_in_requests=10_000))
    report = simulate_in_process(app, config=SimulationConfig(seed=42), out=Path("sim.jsonl"))
    report.evaluation().as_dict()

The application's lifespan runs on an event loop in a background thread; the SDK's
synchronous clients reach it through `AsgiBridge` (httpx's `ASGITransport`, called on that
loop). The sandbox providers' notifications are recorded (`RecordingSender`, put on the app
before its lifespan starts) and relayed through the public notifications route by a pump
thread, which also runs the inbound processor when the app has no embedded worker. A fresh
tenant and API key are made unless one is given.

Keep the sign-in rate limit high (`rate_limit_sign_in_requests`): every simulated customer
signs in from the same in-process client address.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog

from billfold.client import Billfold
from billfold.connectors.senders import OutgoingNotification, RecordingSender
from billfold.events.inbound import InboundProcessor
from billfold.identity import service as identity
from billfold.identity.types import Mode, Scope
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork, parse_database_url
from billfold.risk.simulator.driver import SimulationReport, run_simulation
from billfold.risk.simulator.generator import SimulationConfig, generate

__all__ = ["SIMULATION_SCOPES", "AsgiBridge", "InProcessApp", "in_process", "simulate_in_process"]

T = TypeVar("T")
log = structlog.get_logger(__name__)

BASE_URL = "http://billfold.simulation"
START_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 60.0
PUMP_INTERVAL_S = 0.01
SWEEP_INTERVAL_S = 0.5
INBOUND_ROUNDS_MAX = 100
SIMULATION_SCOPES = (
    Scope.USERS_ADMIN,
    Scope.WALLETS_READ,
    Scope.PAYMENTS_READ,
    Scope.PAYMENTS_WRITE,
    Scope.RISK_WRITE,
)


class AsgiBridge(httpx.BaseTransport):
    """A synchronous httpx transport into an ASGI app running on `loop` (another thread)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()

        async def call() -> tuple[int, httpx.Headers, bytes]:
            response = await self._inner.handle_async_request(request)
            content = await response.aread()
            return response.status_code, response.headers, content

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        try:
            status, headers, content = future.result(timeout=CALL_TIMEOUT_S)
        except TimeoutError as error:
            future.cancel()
            raise httpx.ReadTimeout("the application did not answer", request=request) from error
        return httpx.Response(status, headers=headers, content=content, request=request)


class InProcessApp:
    """A running application: its loop, a transport into it, and its sandbox's sender."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, sender: RecordingSender):
        self.app = app
        self.loop = loop
        self.sender = sender
        self.transport = AsgiBridge(app, loop)

    def call(self, function: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `function()` on the application's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(function(), self.loop).result(CALL_TIMEOUT_S)

    def new_api_key(self, *, name: str = "Simulation") -> str:
        """A fresh tenant and a test-mode key with `SIMULATION_SCOPES`."""
        return self.new_tenant(name=name)[1]

    def new_tenant(self, *, name: str = "Simulation") -> tuple[uuid.UUID, str]:
        """A fresh tenant's id and a test-mode key of it with `SIMULATION_SCOPES`."""
        unit_of_work: UnitOfWork = self.app.state.unit_of_work

        async def make() -> tuple[uuid.UUID, str]:
            now_ns = time.time_ns()
            async with unit_of_work.begin() as session:
                tenant = await identity.bootstrap_tenant(session, name=name, now_ns=now_ns)
                created = await identity.create_api_key(
                    session,
                    tenant_id=tenant.tenant.id,
                    name="Simulator",
                    mode=Mode.TEST,
                    scopes=list(SIMULATION_SCOPES),
                    expires_at_ns=None,
                    now_ns=now_ns,
                )
            return tenant.tenant.id, created.secret

        return self.call(make)


@contextmanager
def in_process(app: Any) -> Iterator[InProcessApp]:
    """Start `app` (a Billfold FastAPI application not yet started) on a background loop,
    with its sandbox notifications recorded and relayed; stop it afterwards."""
    sender = RecordingSender()
    app.state.notification_sender = sender
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with app.router.lifespan_context(app):
                started.set()
                await stop.wait()
        except BaseException as error:
            failure.append(error)
            started.set()
            raise

    thread = threading.Thread(
        target=lambda: _run_quietly(loop, serve()), name="sim-app", daemon=True
    )
    thread.start()
    if not started.wait(START_TIMEOUT_S) or failure:
        raise RuntimeError("the application did not start") from (failure[0] if failure else None)
    running = InProcessApp(app, loop, sender)
    pump = _Pump(running)
    pump.start()
    try:
        yield running
    finally:
        pump.stop()
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(START_TIMEOUT_S)
        loop.close()


def _run_quietly(loop: asyncio.AbstractEventLoop, main: Awaitable[None]) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    except BaseException:  # reported through `failure` to the starting thread
        log.exception("simulation.app_failed")
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())


class _Pump:
    """Relays the recorded sandbox notifications to the public route, and applies them
    (the worker's inbound processor) when the app has no embedded worker."""

    def __init__(self, running: InProcessApp) -> None:
        self._running = running
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sim-pump", daemon=True)
        # `notify` is a public route (the provider's signature is the credential): this
        # client's key is never sent.
        self._client = Billfold(
            api_key="bf_test_unused", base_url=BASE_URL, http_transport=running.transport
        )
        app = running.app
        self._processor: InboundProcessor | None = None
        if getattr(app.state, "worker", None) is None:
            kind = parse_database_url(app.state.settings.database_url).kind
            self._processor = InboundProcessor(
                app.state.unit_of_work,
                app.state.inbound,
                clock=SystemClock(),
                row_locks=kind == "postgresql",
                batch_size_max=100,
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(CALL_TIMEOUT_S)
        self._client.close()

    def _loop(self) -> None:
        swept_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                relayed = self.relay()
                # The processor runs after a relay, and now and then for retries it
                # scheduled: not every round, where it would cost a query each time.
                if relayed or time.monotonic() - swept_at >= SWEEP_INTERVAL_S:
                    self.apply()
                    swept_at = time.monotonic()
            except Exception:  # a failed round is retried; the run reports what it saw
                log.exception("simulation.pump_failed")
            self._stopping.wait(PUMP_INTERVAL_S)

    def relay(self) -> int:
        """Post the notifications the sandbox recorded; how many."""
        sender = self._running.sender

        async def take() -> list[OutgoingNotification]:  # on the loop that appends to it
            return sender.take()

        notifications = self._running.call(take)
        for notification in notifications:
            self._client.connectors.notify(
                notification.provider, body=notification.body, headers=notification.headers
            )
        return len(notifications)

    def apply(self) -> None:
        """Apply what is due, as the worker would (nothing when the app has a worker)."""
        processor = self._processor
        if processor is None:
            return
        for _ in range(INBOUND_ROUNDS_MAX):
            if not self._running.call(processor.run_once):
                break


def simulate_in_process(
    app: Any,
    *,
    config: SimulationConfig,
    out: Path | None = None,
    api_key: str | None = None,
    concurrency: int = 8,
    label: bool = False,
    progress: bool = False,
) -> SimulationReport:
    """Generate `config`'s scenario and play it against `app` in this process (a fresh
    tenant unless `api_key` is given); the report holds every record and the timings."""
    scenario = generate(config)
    with in_process(app) as running:
        key = api_key or running.new_api_key(name=f"Simulation {config.seed}")
        return run_simulation(
            scenario,
            base_url=BASE_URL,
            api_key=key,
            out=out,
            concurrency=concurrency,
            label=label,
            http_transport=running.transport,
            progress=progress,
        )
