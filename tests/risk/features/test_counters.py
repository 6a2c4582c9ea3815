"""The counter stores' shared contract (memory, real Redis, the database on SQLite and
PostgreSQL), the window arithmetic against a brute-force recount (hypothesis), and each
backend's own bounds: the memory store's key cap and bucket eviction, the database's
purge of expired rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.risk.features import repository
from billfold.risk.features.counters import (
    AMOUNT_COUNTED_MAX,
    AMOUNT_SUM_MAX,
    WINDOWS,
    CounterRead,
    CounterSnapshot,
    CounterStore,
    CounterWrite,
    MemoryCounters,
    Tally,
    counter_key,
)
from billfold.risk.features.models import COUNTER_KEY_LENGTH_MAX, RiskCounter
from risk.features.features_support import (
    COUNTER_KINDS,
    DAY_NS,
    SECOND_NS,
    T0_NS,
    counter_store,
)

Check = Callable[[CounterStore, UnitOfWork], Awaitable[None]]
TENANT = uuid.uuid4()
# Ten years before every other test's clock: only the purge test's own rows expire by then.
ANCIENT_NS = T0_NS - 3_650 * DAY_NS


def run(database_url: str, counters: str, check: Check) -> None:
    async def go() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=2)
        unit_of_work = UnitOfWork(engine)
        try:
            async with counter_store(counters, unit_of_work) as store:
                await check(store, unit_of_work)
        finally:
            await engine.dispose()

    asyncio.run(go())


async def _write(store: CounterStore, unit_of_work: UnitOfWork, request: CounterWrite) -> None:
    async with unit_of_work.begin() as session:
        await store.write(session, request)


async def _read(store: CounterStore, unit_of_work: UnitOfWork, request: CounterRead) -> object:
    async with unit_of_work.begin() as session:
        return await store.read(session, request)


def test_adds_are_summed_per_key_and_window(database_url: str, counters: str) -> None:
    tenant = uuid.uuid4()

    async def check(store: CounterStore, unit_of_work: UnitOfWork) -> None:
        for at_ns, adds in (
            (T0_NS - 20 * DAY_NS, (("a", 1),)),
            (T0_NS - 2 * 3600 * SECOND_NS, (("a", 10), ("b", 5))),
            (T0_NS - 30 * SECOND_NS, (("a", 100),)),
            (T0_NS, (("a", 1000), ("a", 1000))),  # the same key twice in one write
        ):
            await _write(store, unit_of_work, CounterWrite(tenant, "test", at_ns, adds=adds))
        snapshot = await _read(
            store, unit_of_work, CounterRead(tenant, "test", T0_NS, keys=("a", "b", "c"))
        )
        assert snapshot.tallies["a"] == {  # type: ignore[attr-defined]
            "1m": Tally(3, 2100),
            "1h": Tally(3, 2100),
            "24h": Tally(4, 2110),
            "30d": Tally(5, 2111),
        }
        assert snapshot.tallies["b"]["24h"] == Tally(1, 5)  # type: ignore[attr-defined]
        assert snapshot.tallies["c"] == {w.name: Tally() for w in WINDOWS}  # type: ignore[attr-defined]
        # Thirty-one days on, everything has left every window.
        later = await _read(
            store, unit_of_work, CounterRead(tenant, "test", T0_NS + 31 * DAY_NS, keys=("a",))
        )
        assert later.tallies["a"]["30d"] == Tally()  # type: ignore[attr-defined]

    run(database_url, counters, check)


def test_seen_members_and_histories(database_url: str, counters: str) -> None:
    tenant = uuid.uuid4()

    async def check(store: CounterStore, unit_of_work: UnitOfWork) -> None:
        read = CounterRead(
            tenant,
            "test",
            T0_NS,
            members=(("devices:u1", "d1"), ("devices:u1", "d2")),
            histories=("h",),
        )
        before = await _read(store, unit_of_work, read)
        assert before.seen == frozenset()  # type: ignore[attr-defined]
        assert before.history("h").count == 0  # type: ignore[attr-defined]
        for amount in (3, 4, 5):
            await _write(
                store,
                unit_of_work,
                CounterWrite(
                    tenant,
                    "test",
                    T0_NS,
                    remember=(("devices:u1", "d1"),),
                    histories=(("h", amount),),
                ),
            )
        after = await _read(store, unit_of_work, read)
        assert after.seen == frozenset({("devices:u1", "d1")})  # type: ignore[attr-defined]
        history = after.history("h")  # type: ignore[attr-defined]
        assert (history.count, history.total, history.total_squares) == (3, 12.0, 50.0)
        # Scoped by tenant and mode.
        for scope in ((uuid.uuid4(), "test"), (tenant, "live")):
            elsewhere = await _read(
                store,
                unit_of_work,
                CounterRead(*scope, T0_NS, members=read.members, histories=("h",)),
            )
            assert elsewhere.seen == frozenset() and elsewhere.histories == {}  # type: ignore[attr-defined]

    run(database_url, counters, check)


def test_amounts_are_capped_so_sums_never_overflow(database_url: str, counters: str) -> None:
    tenant = uuid.uuid4()

    async def check(store: CounterStore, unit_of_work: UnitOfWork) -> None:
        huge = 2**127 - 1
        for _ in range(2):
            await _write(
                store,
                unit_of_work,
                CounterWrite(tenant, "test", T0_NS, adds=(("k", huge),), histories=(("h", huge),)),
            )
        snapshot = await _read(
            store, unit_of_work, CounterRead(tenant, "test", T0_NS, keys=("k",), histories=("h",))
        )
        assert snapshot.tallies["k"]["1m"] == Tally(2, 2 * AMOUNT_COUNTED_MAX)  # type: ignore[attr-defined]
        assert snapshot.history("h").total == 2.0 * AMOUNT_COUNTED_MAX  # type: ignore[attr-defined]

    run(database_url, counters, check)


def test_sums_stop_at_their_bound_so_busy_keys_and_long_histories_never_overflow(
    database_url: str, counters: str
) -> None:
    """A shared payee (`fx:ETH`, where 0.001 ETH is already capped) busy in every bucket of
    30 days, and a user's history of 11,424 capped amounts: every write is accepted and
    every read answers (sums would pass 2**63: a BIGINT or Redis field refused the write,
    SQLite's sum() the read, and Redis read a negative sum)."""
    tenant = uuid.uuid4()
    per_write, writes_per_bucket, buckets = 32, 3, 119
    bucket_ns = 6 * 3600 * SECOND_NS

    async def check(store: CounterStore, unit_of_work: UnitOfWork) -> None:
        for bucket in range(buckets):
            for _ in range(writes_per_bucket):
                await _write(
                    store,
                    unit_of_work,
                    CounterWrite(
                        tenant,
                        "test",
                        T0_NS - bucket * bucket_ns,
                        adds=(("k", AMOUNT_COUNTED_MAX),) * per_write,
                        histories=(("h", AMOUNT_COUNTED_MAX),) * per_write,
                    ),
                )
        snapshot = await _read(
            store, unit_of_work, CounterRead(tenant, "test", T0_NS, keys=("k",), histories=("h",))
        )
        movements = per_write * writes_per_bucket
        assert snapshot.tallies["k"]["1m"] == Tally(movements, AMOUNT_SUM_MAX)  # type: ignore[attr-defined]
        assert snapshot.tallies["k"]["30d"] == Tally(  # type: ignore[attr-defined]
            movements * buckets, AMOUNT_SUM_MAX * buckets
        )
        history = snapshot.history("h")  # type: ignore[attr-defined]
        assert (history.count, history.total) == (movements * buckets, float(AMOUNT_SUM_MAX))

    run(database_url, counters, check)


def test_long_keys_are_hashed_to_fit() -> None:
    payee = "provider:" + "x" * 300
    key = counter_key("payee", payee, "@EUR")
    assert len(key) <= COUNTER_KEY_LENGTH_MAX and key.startswith("payee:sha256:")
    assert key != counter_key("payee", payee, "@USD")
    assert counter_key("user", "abc") == "user:abc"


# --- the window arithmetic ----------------------------------------------------------------

event_offsets = st.lists(st.integers(min_value=0, max_value=40 * DAY_NS), max_size=60)


@settings(max_examples=150, deadline=None)
@given(
    offsets=event_offsets,
    now_offset=st.integers(min_value=0, max_value=2 * DAY_NS),
    amounts=st.data(),
)
def test_window_counts_equal_a_brute_force_recount(
    offsets: list[int], now_offset: int, amounts: st.DataObject
) -> None:
    """Events at random times before `now`, written in random order: each window's count
    and sum equal a recount of the events the window covers (`Window.covers`)."""
    now_ns = T0_NS + now_offset
    events = [(now_ns - offset, amounts.draw(st.integers(0, 10**6))) for offset in offsets]
    store = MemoryCounters()
    for at_ns, amount in amounts.draw(st.permutations(events)):
        store.write_now(CounterWrite(TENANT, "test", at_ns, adds=(("k", amount),)))
    tallies = store.read_now(CounterRead(TENANT, "test", now_ns, keys=("k",))).tallies["k"]
    for window in WINDOWS:
        covered = [amount for at_ns, amount in events if window.covers(at_ns=at_ns, now_ns=now_ns)]
        assert tallies[window.name] == Tally(len(covered), sum(covered)), window.name
        # The window reaches between (length - bucket) and length into the past.
        for at_ns, _amount in events:
            age_ns = now_ns - at_ns
            if age_ns < (window.length_s - window.bucket_s) * SECOND_NS:
                assert window.covers(at_ns=at_ns, now_ns=now_ns)
            if age_ns >= window.length_s * SECOND_NS:
                assert not window.covers(at_ns=at_ns, now_ns=now_ns)


store_events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40 * DAY_NS),
        st.sampled_from(["a", "b"]),
        st.integers(min_value=0, max_value=2 * AMOUNT_COUNTED_MAX),
        st.sampled_from([None, "m1", "m2"]),
    ),
    max_size=25,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=store_events, read_offsets=st.lists(st.integers(-DAY_NS, 31 * DAY_NS), min_size=1))
def test_the_three_stores_answer_alike_for_the_same_history(
    database_url: str, events: list[tuple[int, str, int, str | None]], read_offsets: list[int]
) -> None:
    """The same movements, written out of order, read at random moments (before some of
    them, after every window passed): memory, Redis and the database give the same
    tallies, memberships and histories."""
    tenant = uuid.uuid4()
    writes = [
        CounterWrite(
            tenant,
            "test",
            T0_NS - offset,
            adds=((key, amount), ("all", amount)),
            remember=() if member is None else (("s", member),),
            histories=((key, amount),),
        )
        for offset, key, amount, member in events
    ]
    reads = [
        CounterRead(
            tenant,
            "test",
            T0_NS + offset,
            keys=("a", "b", "all"),
            members=(("s", "m1"), ("s", "m2")),
            histories=("a", "b"),
        )
        for offset in read_offsets[:3]
    ]

    async def answers(store: CounterStore, unit_of_work: UnitOfWork) -> list[object]:
        for request in writes:
            await _write(store, unit_of_work, request)
        return [await _read(store, unit_of_work, request) for request in reads]

    async def go() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=2)
        unit_of_work = UnitOfWork(engine)
        try:
            seen = []
            for kind in COUNTER_KINDS:
                async with counter_store(kind, unit_of_work) as store:
                    seen.append(
                        [_comparable(snapshot) for snapshot in await answers(store, unit_of_work)]
                    )
        finally:
            await engine.dispose()
        assert seen[1:] == seen[:1] * (len(seen) - 1)

    asyncio.run(go())


def _comparable(snapshot: object) -> object:
    """A snapshot as plain values; sums of squares rounded (floats added in another order)."""
    assert isinstance(snapshot, CounterSnapshot)
    return (
        {key: dict(windows) for key, windows in snapshot.tallies.items()},
        snapshot.seen,
        {
            key: (history.count, history.total, float(f"{history.total_squares:.12g}"))
            for key, history in snapshot.histories.items()
        },
    )


@settings(max_examples=50, deadline=None)
@given(offsets=event_offsets)
def test_memory_buckets_stay_bounded(offsets: list[int]) -> None:
    store = MemoryCounters()
    for offset in sorted(offsets, reverse=True):  # oldest first, as time passes
        store.write_now(CounterWrite(TENANT, "test", T0_NS - offset, adds=(("k", 1),)))
    windows = store._tallies.get((TENANT, "test", "k"), [])
    for window, buckets in zip(WINDOWS, windows, strict=False):
        assert len(buckets) <= window.buckets


def test_memory_counters_keep_at_most_keys_max_keys_least_recently_used_out() -> None:
    store = MemoryCounters(keys_max=3)
    for key in ("a", "b", "c"):
        store.write_now(CounterWrite(TENANT, "test", T0_NS, adds=((key, 1),)))
    store.write_now(CounterWrite(TENANT, "test", T0_NS, adds=(("a", 1),)))  # a is fresh again
    store.write_now(CounterWrite(TENANT, "test", T0_NS, adds=(("d", 1),)))  # b goes
    tallies = store.read_now(CounterRead(TENANT, "test", T0_NS, keys=("a", "b", "c", "d"))).tallies
    assert [tallies[key]["1m"].count for key in ("a", "b", "c", "d")] == [2, 0, 1, 1]
    for member in ("m1", "m2", "m3", "m4"):
        store.write_now(CounterWrite(TENANT, "test", T0_NS, remember=(("s", member),)))
    seen = store.read_now(
        CounterRead(TENANT, "test", T0_NS, members=(("s", "m1"), ("s", "m4")))
    ).seen
    assert seen == frozenset({("s", "m4")})  # a forgotten member is "new" again
    assert len(store) == 3 + 3


def test_database_purge_deletes_only_rows_no_window_reaches(database_url: str) -> None:
    tenant = uuid.uuid4()

    async def check(store: CounterStore, unit_of_work: UnitOfWork) -> None:
        await _write(
            store,
            unit_of_work,
            CounterWrite(
                tenant,
                "test",
                ANCIENT_NS,
                adds=(("k", 5),),
                remember=(("s", "m"),),
                histories=(("h", 5),),
            ),
        )

        async def rows() -> int:
            async with unit_of_work.begin() as session:
                statement = (
                    select(func.count())
                    .select_from(RiskCounter)
                    .where(RiskCounter.tenant_id == tenant)
                )
                return int((await session.execute(statement)).scalar_one())

        async def purge(now_ns: int) -> None:
            # The purge spans every tenant. This test writes years before any other test's
            # clock, so only its own rows (and those of its earlier runs on the same
            # database) have expired by then; batches until none is left, as the worker.
            deleted = 100
            while deleted == 100:
                async with unit_of_work.begin() as session:
                    deleted = await repository.purge_expired_counters(
                        session, now_ns=now_ns, limit=100
                    )

        assert await rows() == len(WINDOWS) + 2
        # Two minutes on, the 1-minute window's bucket is gone; the others remain.
        await purge(ANCIENT_NS + 120 * SECOND_NS)
        assert await rows() == len(WINDOWS) + 1
        await purge(ANCIENT_NS + 31 * DAY_NS)
        assert await rows() == 2  # seen members and histories are kept
        snapshot = await _read(
            store,
            unit_of_work,
            CounterRead(tenant, "test", ANCIENT_NS, members=(("s", "m"),), histories=("h",)),
        )
        assert snapshot.seen and snapshot.history("h").count == 1  # type: ignore[attr-defined]

    run(database_url, "database", check)
