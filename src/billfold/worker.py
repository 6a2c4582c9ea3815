"""The background worker: outbox sequencing and dispatch, webhooks, inbound notifications,
and the scheduled work (pending-transfer expiry; idempotency-key, risk-counter and webhook
delivery-log purges; risk model training every `risk_models_train_interval_s`).
`billfold worker` also runs the payments' and review cases' recovery loops
(``flows.recovery_loops``), which the application runs beside its embedded worker.

`billfold worker` runs one; `billfold serve` runs one in its own process unless
`BILLFOLD_EMBEDDED_WORKER=false`. On PostgreSQL any number may run at once (they share the
work through row locks); on SQLite run exactly one (the embedded one, by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import structlog

from billfold.events import repository
from billfold.events.dispatch import (
    Channel,
    ChannelDispatcher,
    InProcessBus,
    Sequencer,
    run_forever,
)
from billfold.events.inbound import InboundProcessor, InboundRegistry
from billfold.events.nats import NatsChannel
from billfold.events.types import Reads
from billfold.events.webhooks import Leased, WebhookFanout, WebhookSender
from billfold.flows.held_movements import PaymentsHeldResolver
from billfold.flows.recovery_loops import pause, running_recovery
from billfold.keys.config import keyring_from_settings
from billfold.keys.keyring import Keyring
from billfold.kit.clock import NANOSECONDS_PER_SECOND, Clock, SystemClock
from billfold.kit.collector import tuned_garbage_collection
from billfold.kit.db import UnitOfWork, parse_database_url
from billfold.kit.http.idempotency_store import PURGE_BATCH_MAX, IdempotencyStore
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.migrations import require_migrated
from billfold.payments.flows.notifications import register_notification_handlers
from billfold.payments.runtime import close_runtime, payments_runtime
from billfold.risk.features.service import purge_risk_counters
from billfold.risk.scoring.config import ScoringConfig
from billfold.risk.scoring.tasks import train_all

__all__ = [
    "PURGE_ROUNDS_MAX",
    "Worker",
    "main",
    "purge_idempotency_keys",
    "run_worker",
    "running_worker",
]

log = structlog.get_logger(__name__)
PURGE_ROUNDS_MAX = 10
DELIVERY_PURGE_BATCH = 1_000
"""Deliveries (with their attempts) one purge transaction deletes: their ids are bound as
one list, which SQLite takes as that many parameters."""
SENDER_LOOPS = 2
SENDER_IDLE_S = 1.0
"""How long an idle webhook sender waits before it looks for due deliveries again, unless
this worker's fan-out wakes it first (it does as soon as it writes deliveries). What the
wait delays: a replay requested through the API, a retry coming due, another worker's
deliveries when its own sender is busy. An empty claim is a transaction of four round
trips: two sender loops looking every 20 ms kept a third of a core busy doing nothing."""
LOOP_IDLE_S_MIN = 5.0
"""How long the sequencer, dispatch and inbound loops wait between rounds when idle, unless
woken: the lookout looks for all of them every poll interval and wakes those with work,
so this wait is a safety net, not what sets their latency."""
SEQUENCER_STANDBY_S = 1.0
"""On PostgreSQL, how long a worker that found the sequencer held by another leaves it to
that one before looking again (`Sequencer._take_over`): the worker holding it keeps it
while it works, so its rounds use the batches it read ahead. If it stops, another takes
over within twice this time."""
BUS_SKIP_INTERVAL_S = 1.0
"""How often a worker whose in-process bus has no subscriber moves that channel's cursors
past the new events. Every round after each numbering, that was a look and a writing
transaction, the most frequent of an idle worker's polls; a subscriber added later may get
up to this much of what came just before it (subscribers are idempotent by event id)."""
HANDOVERS_MAX = 4
"""Batches of leased deliveries the fan-out may have handed to the sender and not yet seen
sent; past it, it writes deliveries unleased, for the sender's own loops to claim. With
two, a third of the deliveries still went through the claim in `bench/events.py` (a
handover of a few thousand takes longer to send than the fan-out's next round); with
four, none did."""
STOP_GRACE_S = 15.0
"""How long a stop waits for the loops to finish their steps (a webhook round's requests
time out after `BILLFOLD_WEBHOOKS_TIMEOUT_S`, 10 s by default)."""


class Worker:
    """Every background loop over one database. `run_once` runs each step once (tests);
    `start` runs them forever as tasks until `stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        unit_of_work: UnitOfWork,
        ledger: Ledger,
        clock: Clock | None = None,
        bus: InProcessBus | None = None,
        inbound: InboundRegistry | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        """`keyring` opens endpoint secrets sealed at rest (`billfold.events.secrets`)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._unit_of_work = unit_of_work
        self.ledger = ledger
        self.bus = bus or InProcessBus()
        self.inbound = inbound or InboundRegistry()
        row_locks = parse_database_url(settings.database_url).kind == "postgresql"
        self._row_locks = row_locks
        self._wake_sequencer = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._wake_inbound = asyncio.Event()
        self.sequencer = Sequencer(
            unit_of_work,
            ledger,
            clock=self.clock,
            batch_size_max=settings.events_batch_size_max,
            row_locks=row_locks,
        )
        self.fanout = WebhookFanout()
        channels: list[Channel] = [self.bus, self.fanout]
        self.nats: NatsChannel | None = None
        if settings.nats_url is not None:
            self.nats = NatsChannel(
                settings.nats_url.get_secret_value(),
                stream=settings.nats_stream,
                prefix=settings.nats_subject_prefix,
                timeout_s=settings.nats_timeout_s,
            )
            channels.append(self.nats)
        self.dispatchers = [
            ChannelDispatcher(
                unit_of_work,
                channel,
                clock=self.clock,
                batch_size_max=settings.events_batch_size_max,
                partitions_per_claim=settings.events_partitions_per_claim,
                row_locks=row_locks,
            )
            for channel in channels
        ]
        self._wake_dispatchers = {channel.name: asyncio.Event() for channel in channels}
        self.sender = WebhookSender(
            unit_of_work,
            clock=self.clock,
            row_locks=row_locks,
            allow_private=settings.webhooks_allow_private,
            timeout_s=settings.webhooks_timeout_s,
            concurrency=settings.webhooks_concurrency,
            batch_size_max=settings.webhooks_batch_size_max,
            lease_s=settings.webhooks_lease_s,
            response_max_bytes=settings.webhooks_response_max_bytes,
            disable_after_s=settings.webhooks_disable_after_days * 86_400,
            transport=webhook_transport,
            rng=rng,
            keyring=keyring,
        )
        self.inbound_processor = InboundProcessor(
            unit_of_work,
            self.inbound,
            clock=self.clock,
            row_locks=row_locks,
            batch_size_max=settings.events_batch_size_max,
            rng=rng,
        )
        self._idempotency = IdempotencyStore(
            unit_of_work,
            ttl_s=settings.idempotency_ttl_s,
            lease_s=settings.idempotency_lease_s,
            response_body_max_bytes=settings.idempotency_response_max_bytes,
        )
        self._tasks: list[asyncio.Task[None]] = []
        """The scheduled tasks (purge, training): like the loops, left to finish a round."""
        self._loops: list[asyncio.Task[None]] = []
        """The dispatch loops: asked to stop, and given `STOP_GRACE_S` to finish a step."""
        self._wakes: set[asyncio.Event] = set()
        self._stopping = asyncio.Event()
        self._bus_skip_due = 0.0
        """When (monotonic) the bus may next move past events no one here listens to."""
        self._started = False
        """Whether the loops run (`start`): only then does the fan-out lease what it writes
        and hand it to the sender (`run_once` and `drain` leave sending to the sender)."""
        self._lease_ns = int(settings.webhooks_lease_s * NANOSECONDS_PER_SECOND)
        self._handovers: set[asyncio.Task[None]] = set()
        """Leased deliveries being sent, handed over by the fan-out."""

    async def prepare(self) -> None:
        """Create the cursors this worker needs (idempotent)."""
        await self.sequencer.prepare()
        for dispatcher in self.dispatchers:
            await dispatcher.prepare()

    async def sequence(self) -> int:
        numbered = await self.sequencer.run_once()
        if numbered:
            for wake in self._wake_dispatchers.values():
                wake.set()
        return numbered

    async def look(self) -> int:
        """The lookout's round: one look for every loop but the sender's, waking those that
        have work (0: the lookout itself always waits its interval)."""
        found = await repository.look(
            self._unit_of_work, channels=list(self._wake_dispatchers), now_ns=self.clock.now_ns()
        )
        if found.unsequenced or (
            # The ledger is asked only for a sequencer that waits: a busy one goes on to its
            # next round unwoken (under load, this read was half of the lookout's cost).
            not self.sequencer.busy
            and not self.sequencer.standing_by
            and not self._wake_sequencer.is_set()
            and await self.sequencer.transfers_after(found.sequencer_position)
        ):
            self._wake_sequencer.set()
        for name in found.behind:
            self._wake_dispatchers[name].set()
        if found.inbound_due:
            self._wake_inbound.set()
        return 0

    async def _dispatch_step(self, dispatcher: ChannelDispatcher) -> int:
        """One round of `dispatcher`. For the fan-out: on PostgreSQL, while the loops run and
        fewer than `HANDOVERS_MAX` handovers are being sent, it leases the deliveries that
        are first in line as it writes them, and once its transaction committed they are
        sent in a task of their own (`WebhookFanout`). A round that wrote deliveries
        unleased wakes the sender once committed (woken inside the transaction, it could
        look before they were visible and then wait a whole idle interval); one that wrote
        none leaves it be."""
        if dispatcher.channel is not self.fanout:
            return await dispatcher.run_once()
        written = self.fanout.written
        self.fanout.take_leased()  # what a round whose commit failed leased stays unsent
        if self._row_locks and self._started:
            # Lease as it writes, while few handovers are being sent (a slow endpoint must
            # not have a queue of them build up: the sender's claim takes over meanwhile).
            under = len(self._handovers) < HANDOVERS_MAX
            self.fanout.lease_ns = self._lease_ns if under else None
        done = await dispatcher.run_once()
        leased = self.fanout.take_leased()
        unleased = self.fanout.written != written
        if leased:
            task = asyncio.create_task(self._send_leased(leased, then_wake=unleased))
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)
        if unleased:
            self._wake_sender.set()
        return done

    async def _send_leased(self, leased: list[Leased], *, then_wake: bool) -> None:
        """Send what the fan-out handed over; `then_wake`: the same round wrote deliveries
        unleased, some of which may wait for these, so the sender looks again once they
        are sent (else it would look only after its idle wait)."""
        try:
            await self.sender.send_leased(leased)
        except Exception:  # their leases run out, then the sender's claim sends them
            log.exception("webhooks.handover_failed", deliveries=len(leased))
        if then_wake:
            self._wake_sender.set()

    async def _bus_step(self, dispatcher: ChannelDispatcher) -> int:
        """The in-process bus's round; on PostgreSQL with no subscriber, at most once a
        `BUS_SKIP_INTERVAL_S` (`run_once` and `drain` are not held back). Not on SQLite: a
        skip held back writes later, taking the one write lock while the API may be
        writing, where now it writes right after the numbering that gave it work."""
        if self._row_locks and self.bus.reads is Reads.NOTHING:
            now = time.monotonic()
            if now < self._bus_skip_due:
                return 0
            self._bus_skip_due = now + BUS_SKIP_INTERVAL_S
        return await dispatcher.run_once()

    async def dispatch(self) -> int:
        """Each channel's round once; deliveries the fan-out leased (only while the loops
        run) are sent before this returns."""
        done = 0
        for dispatcher in self.dispatchers:
            if dispatcher.channel is self.fanout:
                self.fanout.take_leased()  # what a failed commit leased stays unsent
                done += await dispatcher.run_once()
                await self.sender.send_leased(self.fanout.take_leased())
            else:
                done += await dispatcher.run_once()
        return done

    async def run_once(self) -> int:
        """Every step once, in pipeline order: the work done (0 when idle)."""
        done = await self.sequence()
        done += await self.dispatch()
        done += await self.sender.run_once()
        done += await self.inbound_processor.run_once()
        return done

    async def drain(self, *, rounds_max: int = 1000) -> None:
        """Run every step until nothing is left to do now (tests and the CLI)."""
        for _ in range(rounds_max):
            if not await self.run_once():
                return

    def start(self, *, scheduled: bool) -> None:
        """Run every loop as a task; `scheduled` adds the expiry sweep and the purge."""
        self._started = True
        self.sequencer.standby_s = SEQUENCER_STANDBY_S
        interval = self.settings.events_poll_interval_s
        sender_idle = max(interval, SENDER_IDLE_S)
        loop_idle = max(interval, LOOP_IDLE_S_MIN)
        loops: list[tuple[str, Callable[[], Awaitable[int]], asyncio.Event | None, float]] = [
            ("lookout", self.look, None, interval),
            ("sequencer", self.sequence, self._wake_sequencer, loop_idle),
            *[
                (
                    f"dispatch:{d.channel.name}",
                    functools.partial(
                        self._bus_step if d.channel is self.bus else self._dispatch_step, d
                    ),
                    self._wake_dispatchers[d.channel.name],
                    loop_idle,
                )
                for d in self.dispatchers
            ],
            # Two sender loops on PostgreSQL: one sends while the other claims or records
            # (row locks keep them apart); SQLite has one writer, so one loop.
            *[
                (f"webhooks:{i}", self.sender.run_once, self._wake_sender, sender_idle)
                for i in range(SENDER_LOOPS if self._row_locks else 1)
            ],
            ("inbound", self.inbound_processor.run_once, self._wake_inbound, loop_idle),
        ]
        for name, step, wake, idle_s in loops:
            woken = wake or asyncio.Event()  # stop() sets it: a loop's wait ends at once
            self._wakes.add(woken)
            self._loops.append(
                asyncio.create_task(
                    run_forever(name, step, idle_s=idle_s, wake=woken, stopping=self._stopping)
                )
            )
        if scheduled:
            self.ledger.start_expiry(interval_s=self.settings.ledger_expiry_interval_s)
            self._tasks.append(asyncio.create_task(self._purge_forever()))
            if self.settings.risk_models_train_interval_s > 0:
                self._tasks.append(asyncio.create_task(self._train_risk_models_forever()))

    async def _purge_forever(self) -> None:
        keys = functools.partial(purge_idempotency_keys, self._idempotency)
        while await pause(self._stopping, self.settings.idempotency_purge_interval_s):
            await _logged("idempotency.purge_failed", keys)
            await self.purge()

    async def purge(self) -> None:
        """The worker's own purges, each once: the risk engine's database velocity counters
        past their windows, and the delivery log past its retention. `billfold serve` runs
        them beside its embedded worker (which purges its idempotency keys itself), every
        `idempotency_purge_interval_s` as `billfold worker` does. A failure is logged and
        retried next interval, and does not keep the other from running."""
        await _logged("risk.counters.purge_failed", self._purge_risk_counters)
        await _logged("webhooks.purge_failed", self.purge_delivery_log)

    async def _purge_risk_counters(self) -> int:
        return await purge_risk_counters(self._unit_of_work, now_ns=self.clock.now_ns())

    async def purge_delivery_log(self) -> int:
        """Delete the deliveries that succeeded or were dead-lettered over
        `webhooks_delivery_retention_days` ago, with their attempts (none when it is 0), in
        bounded transactions; how many deliveries went. Their events stay, and can be
        replayed."""
        days = self.settings.webhooks_delivery_retention_days
        if not days:
            return 0
        before_ns = self.clock.now_ns() - days * 86_400 * NANOSECONDS_PER_SECOND
        return await self._unit_of_work.delete_in_batches(
            lambda session, limit: repository.purge_completed_deliveries(
                session, completed_before_ns=before_ns, limit=limit
            ),
            batch=DELIVERY_PURGE_BATCH,
            rounds_max=PURGE_ROUNDS_MAX,
        )

    async def train_risk_models(self) -> int:
        """Train every active tenant's risk models once (new shadow versions): how many."""
        results = await train_all(
            self._unit_of_work,
            config=ScoringConfig.from_settings(self.settings),
            now_ns=self.clock.now_ns(),
        )
        return sum(result.version is not None for result in results)

    async def _train_risk_models_forever(self) -> None:
        while await pause(self._stopping, self.settings.risk_models_train_interval_s):
            await _logged("risk.models_training_failed", self.train_risk_models)

    async def stop(self) -> None:
        """Let each loop and scheduled task finish the step it is in (a cancelled step would
        leave its transaction to be cleaned up by a cancelled rollback: on SQLite such a
        connection kept the write lock), and the fan-out's handovers finish sending, for up
        to `STOP_GRACE_S` in all; cancel the rest."""
        self._stopping.set()
        for wake in self._wakes:
            wake.set()
        self._started = False
        self.fanout.lease_ns = None
        self.sequencer.standby_s = 0.0  # as `drain` expects
        deadline = time.monotonic() + STOP_GRACE_S
        if self._loops or self._tasks:
            await asyncio.wait([*self._loops, *self._tasks], timeout=STOP_GRACE_S)
        if self._handovers:  # sent within the same grace, else their leases run out
            await asyncio.wait(self._handovers, timeout=max(0.0, deadline - time.monotonic()))
        tasks = [*self._loops, *self._tasks, *self._handovers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        self._tasks.clear()
        self._wakes.clear()
        self._stopping.clear()
        await self.sender.close()
        if self.nats is not None:
            await self.nats.close()


@asynccontextmanager
async def running_worker(
    settings: Settings,
    *,
    unit_of_work: UnitOfWork,
    ledger: Ledger,
    scheduled: bool,
    keyring: Keyring | None = None,
    inbound: InboundRegistry | None = None,
) -> AsyncIterator[Worker]:
    """A started worker, stopped when the block ends."""
    worker = Worker(
        settings, unit_of_work=unit_of_work, ledger=ledger, keyring=keyring, inbound=inbound
    )
    await worker.prepare()
    worker.start(scheduled=scheduled)
    try:
        yield worker
    finally:
        await worker.stop()


async def _until_terminated() -> None:
    """Wait for SIGTERM (what process managers send to stop a service): the worker then
    stops as after Ctrl-C, letting each loop finish its round, instead of dying mid-round
    as Python's default handling of the signal would have it."""
    terminated = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, terminated.set)
    except (NotImplementedError, RuntimeError):  # no signal handlers here (not the main thread)
        await asyncio.Event().wait()
        return
    try:
        await terminated.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _logged(failure: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run one round of a scheduled task; an error is logged as `failure` and the next
    interval retries it (a crash would stop that task for good)."""
    try:
        await step()
    except Exception:
        log.exception(failure)


async def purge_idempotency_keys(store: IdempotencyStore) -> None:
    """Delete expired idempotency keys, at most `PURGE_ROUNDS_MAX` batches (the worker's
    purge, and the application's own when its embedded worker runs)."""
    for _ in range(PURGE_ROUNDS_MAX):
        if await store.purge_expired() < PURGE_BATCH_MAX:
            break


def main(settings: Settings, *, drain: bool) -> None:
    """Run `run_worker` to its end on uvloop, the loop `billfold serve` runs under
    (uvicorn's default), or on asyncio's own where uvloop is not installed (Windows, PyPy).
    On PostgreSQL, asyncio's loop cost a loaded worker a fifth of its CPU in `bench/events.py`
    (asyncpg's reads through `selector_events`, and the loop's own rounds).

    The garbage collector is tuned as `billfold serve` tunes it (`kit.collector`): with
    Python's defaults, collections took 40% of a loaded worker's CPU there, most of it
    traversing the heap imported at startup again and again."""
    with tuned_garbage_collection(settings.gc_gen0_threshold):
        try:
            import uvloop
        except ImportError:  # pragma: no cover (installed with uvicorn[standard] where it builds)
            asyncio.run(run_worker(settings, drain=drain))
        else:
            uvloop.run(run_worker(settings, drain=drain))


async def run_worker(settings: Settings, *, drain: bool) -> None:
    """`billfold worker`: every loop, with the scheduled work, until interrupted; or, with
    `drain`, deliver what is due now and return."""
    from billfold.kit.db import create_engine

    engine = create_engine(
        parse_database_url(settings.database_url), pool_size=settings.database_pool_size
    )
    try:
        await require_migrated(engine)
    except BaseException:
        await engine.dispose()
        raise
    ledger = Ledger.from_settings(settings)
    await ledger.open()
    keyring = keyring_from_settings(settings)  # the keystore opens on first use
    try:
        unit_of_work = UnitOfWork(engine)
        inbound = InboundRegistry()  # provider notifications, applied by payments
        runtime = payments_runtime(settings, ledger=ledger, unit_of_work=unit_of_work)
        runtime.keyring = keyring  # held payouts are sealed: resolving one unseals it
        register_notification_handlers(inbound, runtime)
        if drain:
            worker = Worker(
                settings,
                unit_of_work=unit_of_work,
                ledger=ledger,
                keyring=keyring,
                inbound=inbound,
            )
            try:
                await worker.prepare()
                await worker.drain()
            finally:
                await worker.stop()
            return
        resolver = PaymentsHeldResolver(runtime)
        async with (
            running_worker(
                settings,
                unit_of_work=unit_of_work,
                ledger=ledger,
                scheduled=True,
                keyring=keyring,
                inbound=inbound,
            ),
            running_recovery(
                unit_of_work=unit_of_work,
                ledger=ledger,
                payments=lambda: runtime,
                resolver=lambda: resolver,
                payments_interval_s=settings.payments_resume_interval_s,
                risk_cases_interval_s=settings.risk_cases_recovery_interval_s,
            ),
        ):
            await _until_terminated()  # SIGTERM; Ctrl-C cancels the wait
    finally:
        await close_runtime(runtime)
        keyring.close()
        await ledger.close()
        await engine.dispose()
