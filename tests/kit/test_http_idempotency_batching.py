"""The batching idempotency store on SQLite and PostgreSQL: it passes the plain store's tests,
concurrent begins and completes share transactions, a key claimed twice in one batch is
decided in full, and a failed batch fails only its own requests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.clock import ManualClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.http.idempotency_batching import BatchingIdempotencyStore
from billfold.kit.http.idempotency_store import (
    IdempotencyStoreBusy,
    Mismatch,
    Replay,
    Started,
)

# The plain store's behaviour, proven again on this store through the `store` fixture below.
from kit.test_http_idempotency_store import (  # noqa: F401
    ANSWER,
    DAY_S,
    FIRST,
    LEASE_S,
    SECOND,
    test_a_completed_key_replays_and_refuses_another_request,
    test_a_running_key_is_in_progress_until_its_lease_ends,
    test_an_abandoned_key_starts_afresh,
    test_an_expired_key_not_yet_purged_is_a_fresh_key,
    test_keys_are_purged_only_after_their_time_to_live,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def unit_of_work(isolated_database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(isolated_database_url), pool_size=2)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def scope() -> str:
    return f"tenant-{uuid.uuid4().hex}"


class CountingUnitOfWork(UnitOfWork):
    """Counts transactions, and fails the next one when told to."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.transactions = 0
        self.fail_next = False

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        self.transactions += 1
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("the database went away")
        async with self._inner.begin() as session:
            yield session


@pytest.fixture
def counting(unit_of_work: UnitOfWork) -> CountingUnitOfWork:
    return CountingUnitOfWork(unit_of_work)


@pytest.fixture
def store(counting: CountingUnitOfWork, clock: ManualClock) -> BatchingIdempotencyStore:
    return BatchingIdempotencyStore(counting, clock=clock, ttl_s=DAY_S, lease_s=LEASE_S)


async def test_concurrent_begins_and_completes_share_transactions(
    store: BatchingIdempotencyStore, counting: CountingUnitOfWork, scope: str
) -> None:
    keys = [f"key-{index}" for index in range(40)]
    started = await asyncio.gather(
        *(store.begin(scope=scope, key=key, fingerprint=FIRST) for key in keys)
    )
    claimed = counting.transactions
    kept = await asyncio.gather(*(store.complete(s, ANSWER) for s in started))  # type: ignore[arg-type]
    completed = counting.transactions - claimed
    replays = await asyncio.gather(
        *(store.begin(scope=scope, key=key, fingerprint=FIRST) for key in keys)
    )
    assert all(isinstance(outcome, Started) for outcome in started)
    assert kept == [True] * len(keys)
    assert all(outcome == Replay(ANSWER) for outcome in replays)
    # The first caller's batch is alone; everyone who arrived meanwhile shares the next.
    assert claimed <= 2 and completed <= 2


async def test_one_key_claimed_twice_in_a_batch_is_decided_in_full(
    store: BatchingIdempotencyStore, scope: str
) -> None:
    same, other = await asyncio.gather(
        asyncio.gather(*(store.begin(scope=scope, key="twice", fingerprint=FIRST) for _ in "ab")),
        asyncio.gather(
            store.begin(scope=scope, key="other", fingerprint=FIRST),
            store.begin(scope=scope, key="other", fingerprint=SECOND),
        ),
    )
    assert sorted(type(outcome).__name__ for outcome in same) == ["InProgress", "Started"]
    assert isinstance(other[0], Started)
    assert isinstance(other[1], Mismatch)


async def test_a_completion_that_lost_its_key_is_not_kept(
    store: BatchingIdempotencyStore, clock: ManualClock, scope: str
) -> None:
    first = await store.begin(scope=scope, key="slow", fingerprint=FIRST)
    assert isinstance(first, Started)
    clock.advance(seconds=LEASE_S + 1)  # the first holder died, as far as anyone can tell
    second = await store.begin(scope=scope, key="slow", fingerprint=FIRST)
    assert isinstance(second, Started)
    late, current = await asyncio.gather(
        store.complete(first, ANSWER), store.complete(second, ANSWER)
    )
    assert (late, current) == (False, True)


async def test_a_failed_batch_fails_its_own_requests_only(
    store: BatchingIdempotencyStore, counting: CountingUnitOfWork, scope: str
) -> None:
    counting.fail_next = True
    with pytest.raises(ConnectionError):
        await store.begin(scope=scope, key="unlucky", fingerprint=FIRST)
    after = await store.begin(scope=scope, key="unlucky", fingerprint=FIRST)
    assert isinstance(after, Started), "nothing was written by the failed batch"


async def test_too_many_waiting_requests_are_refused(
    counting: CountingUnitOfWork, clock: ManualClock, scope: str
) -> None:
    store = BatchingIdempotencyStore(counting, clock=clock, queue_size_max=2, batch_size_max=1)
    outcomes = await asyncio.gather(
        *(store.begin(scope=scope, key=f"k{index}", fingerprint=FIRST) for index in range(4)),
        return_exceptions=True,
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, IdempotencyStoreBusy)]
    assert refused and len(refused) < len(outcomes)
    assert all(isinstance(o, Started | IdempotencyStoreBusy) for o in outcomes)


@pytest.mark.parametrize(
    ("scope_text", "key"), [("", "k"), ("s", ""), ("s" * 256, "k"), ("s", "k" * 256)]
)
async def test_scopes_and_keys_are_checked_before_joining_a_batch(
    store: BatchingIdempotencyStore, scope_text: str, key: str
) -> None:
    with pytest.raises(ValueError, match="characters"):
        await store.begin(scope=scope_text, key=key, fingerprint=FIRST)


async def test_bounds_are_refused(unit_of_work: UnitOfWork) -> None:
    with pytest.raises(ValueError, match="batch_size_max"):
        BatchingIdempotencyStore(unit_of_work, batch_size_max=0)
    with pytest.raises(ValueError, match="queue_size_max"):
        BatchingIdempotencyStore(unit_of_work, queue_size_max=0)
