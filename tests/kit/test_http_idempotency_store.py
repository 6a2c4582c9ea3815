"""The idempotency store on SQLite and PostgreSQL: keys live at least 24 hours, expire into
fresh keys, and a key whose holder died is taken over once its lease ends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billfold.kit.clock import ManualClock
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.http.idempotency_models import IdempotencyKey
from billfold.kit.http.idempotency_store import (
    IDEMPOTENCY_TTL_S_MAX,
    IDEMPOTENCY_TTL_S_MIN,
    IdempotencyStore,
    InProgress,
    Mismatch,
    Replay,
    Started,
    StoredResponse,
    media_type_of,
    request_fingerprint,
)

pytestmark = pytest.mark.anyio

DAY_S = 24 * 3600
LEASE_S = 30
ANSWER = StoredResponse(status=201, headers=(("content-type", "application/json"),), body=b"{}")
FIRST = request_fingerprint(method="POST", path="/transfers", query_string=b"", body=b"1")
SECOND = request_fingerprint(method="POST", path="/transfers", query_string=b"", body=b"2")


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
def store(unit_of_work: UnitOfWork, clock: ManualClock) -> IdempotencyStore:
    return IdempotencyStore(unit_of_work, clock=clock, ttl_s=DAY_S, lease_s=LEASE_S)


@pytest.fixture
def scope() -> str:
    return f"tenant-{uuid.uuid4().hex}"


def unconnected(directory: Path) -> UnitOfWork:
    """A unit of work for tests that must fail before touching the database."""
    return UnitOfWork(create_engine(parse_database_url(f"sqlite:///{directory}/unused.db")))


async def started(store: IdempotencyStore, scope: str, key: str, fingerprint: str) -> Started:
    outcome = await store.begin(scope=scope, key=key, fingerprint=fingerprint)
    assert isinstance(outcome, Started)
    return outcome


async def count_keys(unit_of_work: UnitOfWork) -> int:
    async with unit_of_work.begin() as session:
        return int(await session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0)


async def test_a_completed_key_replays_and_refuses_another_request(
    store: IdempotencyStore, scope: str
) -> None:
    holder = await started(store, scope, "k", FIRST)
    assert await store.complete(holder, ANSWER)
    assert await store.begin(scope=scope, key="k", fingerprint=FIRST) == Replay(ANSWER)
    assert await store.begin(scope=scope, key="k", fingerprint=SECOND) == Mismatch()


async def test_a_running_key_is_in_progress_until_its_lease_ends(
    store: IdempotencyStore, scope: str, clock: ManualClock
) -> None:
    dead = await started(store, scope, "k", FIRST)
    clock.advance(seconds=LEASE_S - 1)
    assert await store.begin(scope=scope, key="k", fingerprint=FIRST) == InProgress()
    clock.advance(seconds=1)
    successor = await started(store, scope, "k", FIRST)
    # The first holder, back from the dead, can neither store nor release the key.
    assert not await store.complete(dead, ANSWER)
    assert not await store.abandon(dead)
    assert await store.complete(successor, ANSWER)
    assert await store.begin(scope=scope, key="k", fingerprint=FIRST) == Replay(ANSWER)


async def test_an_abandoned_key_starts_afresh(store: IdempotencyStore, scope: str) -> None:
    holder = await started(store, scope, "k", FIRST)
    assert await store.abandon(holder)
    await started(store, scope, "k", SECOND)


async def test_keys_are_purged_only_after_their_time_to_live(
    store: IdempotencyStore, scope: str, clock: ManualClock, unit_of_work: UnitOfWork
) -> None:
    await store.complete(await started(store, scope, "k", FIRST), ANSWER)
    clock.advance(seconds=DAY_S - 1)
    assert await store.purge_expired() == 0
    assert await store.begin(scope=scope, key="k", fingerprint=FIRST) == Replay(ANSWER)
    clock.advance(seconds=1)
    assert await store.purge_expired() == 1
    assert await count_keys(unit_of_work) == 0
    await started(store, scope, "k", SECOND)


async def test_an_expired_key_not_yet_purged_is_a_fresh_key(
    store: IdempotencyStore, scope: str, clock: ManualClock
) -> None:
    await store.complete(await started(store, scope, "k", FIRST), ANSWER)
    clock.advance(seconds=DAY_S)
    renewed = await started(store, scope, "k", SECOND)
    assert await store.complete(renewed, ANSWER)
    # A new lifetime began with the new request.
    clock.advance(seconds=DAY_S - 1)
    assert await store.purge_expired() == 0
    assert await store.begin(scope=scope, key="k", fingerprint=SECOND) == Replay(ANSWER)


async def test_no_key_younger_than_a_day_is_purged_whatever_the_caller_says(
    store: IdempotencyStore, scope: str, clock: ManualClock
) -> None:
    await started(store, scope, "k", FIRST)
    assert await store.purge_expired(clock.now_ns() + (DAY_S - 1) * 1_000_000_000) == 0


async def test_a_purge_deletes_at_most_its_limit(
    store: IdempotencyStore, scope: str, clock: ManualClock, unit_of_work: UnitOfWork
) -> None:
    for index in range(5):
        await started(store, scope, f"k{index}", FIRST)
    clock.advance(seconds=DAY_S)
    assert await store.purge_expired(limit=3) == 3
    assert await store.purge_expired(limit=3) == 2
    assert await count_keys(unit_of_work) == 0


@pytest.mark.parametrize(
    "arguments",
    [
        {"ttl_s": IDEMPOTENCY_TTL_S_MIN - 1},
        {"ttl_s": IDEMPOTENCY_TTL_S_MAX + 1},
        {"lease_s": 0},
        {"response_body_max_bytes": -1},
    ],
)
def test_settings_outside_their_bounds_are_refused(
    arguments: dict[str, int], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="must be"):
        IdempotencyStore(unconnected(tmp_path), **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("owner", "key"), [("", "k"), ("s" * 256, "k"), ("s", ""), ("s", "k" * 256)]
)
async def test_scopes_and_keys_are_bounded(owner: str, key: str, tmp_path: Path) -> None:
    store = IdempotencyStore(unconnected(tmp_path))
    with pytest.raises(ValueError, match="must be"):
        await store.begin(scope=owner, key=key, fingerprint=FIRST)


def test_every_part_of_a_request_changes_its_fingerprint() -> None:
    base = {"method": "POST", "path": "/a", "query_string": b"", "body": b"{}"}
    variants = [
        base,
        {**base, "method": "PUT"},
        {**base, "path": "/b"},
        {**base, "query_string": b"x=1"},
        {**base, "body": b"{ }"},
        # The same bytes split differently between parts must not collide.
        {**base, "path": "/ab", "body": b""},
        {**base, "path": "/a", "query_string": b"b", "body": b""},
    ]
    fingerprints = {request_fingerprint(**variant) for variant in variants}  # type: ignore[arg-type]
    assert len(fingerprints) == len(variants)
    assert all(len(fingerprint) == 64 for fingerprint in fingerprints)


def test_the_media_type_counts_unless_it_is_json() -> None:
    """A body first sent as text/plain (415) and then as JSON is another request; JSON,
    and no body without a Content-Type, fingerprint as before the media type counted (a
    retry across the upgrade still matches its stored response)."""
    base = {"method": "POST", "path": "/a", "query_string": b"", "body": b"{}"}
    before = request_fingerprint(**base)  # type: ignore[arg-type]
    assert request_fingerprint(**base, media_type="application/json") == before  # type: ignore[arg-type]
    others = {
        request_fingerprint(**base, media_type=media)  # type: ignore[arg-type]
        for media in ("text/plain", "", "application/merge-patch+json")
    }
    assert len(others) == 3 and before not in others
    empty = {**base, "body": b""}
    assert request_fingerprint(**empty, media_type="") == request_fingerprint(**empty)  # type: ignore[arg-type]
    assert media_type_of(b"Application/JSON ; charset=UTF-8") == "application/json"
    assert media_type_of(None) == ""
