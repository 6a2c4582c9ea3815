"""`FeatureComputer`: the `FeatureSource` of the risk engine.

`compute` reads, for one movement, every counter in one call to the counter store and what
the database knows of the user in one query (the slow-changing facts — sign-up time,
residence, KYC tier — are cached per user for ``user_facts_ttl_s``; the recent failed
sign-ins are read every time). With the database counters that is two queries; with
memory or Redis counters one query and one Redis round trip (or microseconds).

`record` counts the movement after it was decided: velocity of its user, device, payee and
IP (counts in any currency, amounts per currency), money received by a payee user, the
user's devices and payees seen, and the user's history of amounts.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.kit.ids import InvalidId, format_id, parse_id
from billfold.kit.money import UnknownAsset, default_registry
from billfold.kit.settings import Settings
from billfold.risk.features import repository
from billfold.risk.features.catalogue import FEATURES, VELOCITY_SUBJECTS
from billfold.risk.features.counters import (
    WINDOWS,
    CounterRead,
    CounterSnapshot,
    CounterStore,
    CounterWrite,
    DatabaseCounters,
    MemoryCounters,
    RedisCounters,
    counter_key,
)
from billfold.risk.features.ip_countries import IpCountryTable, load_ip_countries
from billfold.risk.features.repository import SecurityCounts, UserFacts
from billfold.risk.types import FeatureValue, Movement, MovementKind
from billfold.wallets.limits import DEFAULT_TIER

__all__ = [
    "FeatureComputer",
    "bench_compute",
    "feature_source_from_settings",
    "purge_risk_counters",
]

NANOSECONDS_PER_SECOND = 1_000_000_000
NANOSECONDS_PER_DAY = 86_400 * NANOSECONDS_PER_SECOND
USER_FACTS_ENTRIES_MAX = 10_000
_ASSETS = default_registry()
_NAMES = frozenset(FEATURES)


@dataclass(frozen=True, slots=True)
class _Keys:
    """The counter keys of one movement: subject → (count key, amount key)."""

    velocity: dict[str, tuple[str, str]]
    received: str | None
    """The user's received-money key (read), when there is a user."""
    received_by: str | None
    """The key the movement adds received money to (record), when someone receives it."""
    devices: str | None
    payees: str | None
    history: str | None


def _keys(movement: Movement) -> _Keys:
    currency = movement.currency
    subjects = {
        "user": None if movement.user_id is None else movement.user_id.hex,
        "device": None if movement.device_id is None else movement.device_id.hex,
        "payee": movement.payee,
        "ip": movement.ip,
    }
    velocity = {
        subject: (counter_key(subject, value), counter_key(subject, value, "@" + currency))
        for subject, value in subjects.items()
        if value
    }
    user = subjects["user"]
    receiver = _receiving_user(movement)
    return _Keys(
        velocity=velocity,
        received=None if user is None else counter_key("received", user, currency),
        received_by=None if receiver is None else counter_key("received", receiver, currency),
        devices=None if user is None else f"devices:{user}",
        payees=None if user is None else f"payees:{user}",
        history=None if user is None else counter_key("history", user, currency),
    )


def _receiving_user(movement: Movement) -> str | None:
    """The end user the money goes to, as hex: a payee `usr_…`, or the user of a top-up."""
    if movement.kind is MovementKind.TOP_UP and movement.user_id is not None:
        return movement.user_id.hex
    if movement.payee is not None and movement.payee.startswith("usr_"):
        try:
            return parse_id("usr", movement.payee).hex
        except InvalidId:
            return None
    return None


class FeatureComputer:
    """Computes and records features (the `billfold.risk.types.FeatureSource` protocol).

    `counters` is where velocity lives (`MemoryCounters`, `RedisCounters`,
    `DatabaseCounters`); `ip_countries` the table for IPs whose country the caller did not
    give; `user_facts_ttl_s` how long a user's slow-changing facts are cached (0: never).
    """

    def __init__(
        self,
        counters: CounterStore,
        *,
        ip_countries: IpCountryTable | None = None,
        user_facts_ttl_s: float = 30.0,
        user_facts_entries_max: int = USER_FACTS_ENTRIES_MAX,
        clock: Callable[[], float] = time.monotonic,
        closing: Callable[[], Any] | None = None,
    ) -> None:
        invariant(user_facts_ttl_s >= 0, "a cache lifetime is not negative")
        invariant(user_facts_entries_max >= 1, "the cache holds at least one user")
        self.counters = counters
        self._ip_countries = ip_countries
        self._ttl_s = user_facts_ttl_s
        self._entries_max = user_facts_entries_max
        self._clock = clock
        self._closing = closing
        self._facts: OrderedDict[tuple[uuid.UUID, str, uuid.UUID], tuple[float, UserFacts]] = (
            OrderedDict()
        )

    @property
    def names(self) -> frozenset[str]:
        return _NAMES

    async def aclose(self) -> None:
        """Release what the factory opened (a Redis client)."""
        if self._closing is not None:
            await self._closing()
            self._closing = None

    def forget_user(self, tenant_id: uuid.UUID, mode: str, user_id: uuid.UUID) -> None:
        """Drop a user's cached facts (after their profile or tier changed in this process)."""
        self._facts.pop((tenant_id, mode, user_id), None)

    async def compute(self, session: AsyncSession, movement: Movement) -> dict[str, FeatureValue]:
        keys = _keys(movement)
        request = _read_request(movement, keys)
        if isinstance(self.counters, RedisCounters):
            # Redis answers while the database does: one round trip's wait, not two. The
            # query runs in this task, never cancelled halfway (a session does not survive
            # that); the Redis read is the task we cancel if the query fails.
            reading = asyncio.ensure_future(self.counters.read(None, request))
            try:
                facts, security = await self._user(session, movement)
            except BaseException:
                reading.cancel()
                reading.add_done_callback(_retrieve)  # its own error, if any, is not news
                raise
            snapshot = await reading
        else:  # the database counters share the session; memory counters take microseconds
            snapshot = await self.counters.read(session, request)
            facts, security = await self._user(session, movement)
        features = _movement_features(movement, self._ip_country(movement))
        features.update(_velocity_features(snapshot, keys))
        features.update(_user_features(movement, snapshot, keys, facts, security))
        features["ip_country_mismatch"] = bool(
            features["ip_country"]
            and features["residence_country"]
            and features["ip_country"] != features["residence_country"]
        )
        invariant(features.keys() == _NAMES, "compute returns exactly the catalogue")
        return features

    async def record(self, session: AsyncSession, movement: Movement) -> None:
        keys = _keys(movement)
        adds: list[tuple[str, int]] = []
        for count_key, amount_key in keys.velocity.values():
            adds += [(count_key, 0), (amount_key, movement.amount)]
        if keys.received_by is not None:
            adds.append((keys.received_by, movement.amount))
        remember = []
        if keys.devices is not None and movement.device_id is not None:
            remember.append((keys.devices, movement.device_id.hex))
        if keys.payees is not None and movement.payee:
            remember.append((keys.payees, movement.payee))
        histories = [] if keys.history is None else [(keys.history, movement.amount)]
        await self.counters.write(
            session,
            CounterWrite(
                tenant_id=movement.tenant_id,
                mode=movement.mode,
                at_ns=movement.occurred_at_ns,
                adds=tuple(adds),
                remember=tuple(remember),
                histories=tuple(histories),
            ),
        )

    def _ip_country(self, movement: Movement) -> str:
        if movement.ip_country:
            return movement.ip_country.upper()
        if movement.ip and self._ip_countries is not None:
            return self._ip_countries.country_of(movement.ip) or ""
        return ""

    async def _user(
        self, session: AsyncSession, movement: Movement
    ) -> tuple[UserFacts | None, SecurityCounts]:
        """The user's facts (cached) and their recent security counts: one query."""
        if movement.user_id is None:
            return None, SecurityCounts(failed_logins=0, mfa_failures=0)
        cache_key = (movement.tenant_id, movement.mode, movement.user_id)
        subject_id = format_id("usr", movement.user_id)
        since_ns = movement.occurred_at_ns - NANOSECONDS_PER_DAY
        now = self._clock()
        cached = self._facts.get(cache_key)
        if cached is not None and cached[0] > now:
            security = await repository.security_counts(
                session, tenant_id=movement.tenant_id, subject_id=subject_id, since_ns=since_ns
            )
            return cached[1], security
        facts, security = await repository.user_facts(
            session,
            tenant_id=movement.tenant_id,
            mode=movement.mode,
            user_id=movement.user_id,
            subject_id=subject_id,
            since_ns=since_ns,
        )
        if self._ttl_s > 0:
            self._facts[cache_key] = (now + self._ttl_s, facts)
            self._facts.move_to_end(cache_key)
            while len(self._facts) > self._entries_max:
                self._facts.popitem(last=False)
        return facts, security


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _read_request(movement: Movement, keys: _Keys) -> CounterRead:
    velocity = [key for pair in keys.velocity.values() for key in pair]
    members = []
    if keys.devices is not None and movement.device_id is not None:
        members.append((keys.devices, movement.device_id.hex))
    if keys.payees is not None and movement.payee:
        members.append((keys.payees, movement.payee))
    return CounterRead(
        tenant_id=movement.tenant_id,
        mode=movement.mode,
        now_ns=movement.occurred_at_ns,
        keys=tuple(velocity + ([keys.received] if keys.received else [])),
        members=tuple(members),
        histories=() if keys.history is None else (keys.history,),
    )


def _movement_features(movement: Movement, ip_country: str) -> dict[str, FeatureValue]:
    try:
        exponent = _ASSETS.get(movement.currency).exponent
    except UnknownAsset:
        exponent = 0
    seconds = movement.occurred_at_ns // NANOSECONDS_PER_SECOND
    return {
        "kind": movement.kind.value,
        "amount": movement.amount,
        "currency": movement.currency,
        "amount_major": movement.amount / 10**exponent,
        "has_device": movement.device_id is not None,
        "has_ip": bool(movement.ip),
        "ip_country": ip_country,
        "hour_of_day": time.gmtime(seconds).tm_hour,
        "day_of_week": time.gmtime(seconds).tm_wday,
    }


_VELOCITY_NAMES = {
    subject: [
        (window.name, f"{subject}_count_{window.name}", f"{subject}_amount_{window.name}")
        for window in WINDOWS
    ]
    for subject in VELOCITY_SUBJECTS
}


def _velocity_features(snapshot: CounterSnapshot, keys: _Keys) -> dict[str, FeatureValue]:
    features: dict[str, FeatureValue] = {}
    for subject, names in _VELOCITY_NAMES.items():
        pair = keys.velocity.get(subject)
        if pair is None:
            for _window, count_name, amount_name in names:
                features[count_name] = features[amount_name] = 0
            continue
        counts, amounts = snapshot.tallies.get(pair[0], {}), snapshot.tallies.get(pair[1], {})
        for window, count_name, amount_name in names:
            counted, summed = counts.get(window), amounts.get(window)
            features[count_name] = 0 if counted is None else counted.count
            features[amount_name] = 0 if summed is None else summed.amount
    received = 0 if keys.received is None else snapshot.tally(keys.received, "24h").amount
    features["user_received_amount_24h"] = received
    return features


def _user_features(
    movement: Movement,
    snapshot: CounterSnapshot,
    keys: _Keys,
    facts: UserFacts | None,
    security: SecurityCounts,
) -> dict[str, FeatureValue]:
    history = snapshot.history(keys.history) if keys.history else None
    device_pair = (keys.devices or "", movement.device_id.hex if movement.device_id else "")
    payee_pair = (keys.payees or "", movement.payee or "")
    age_days, tier, residence = -1.0, -1, ""
    if facts is not None:
        if facts.created_at is not None:
            age_days = max(movement.occurred_at_ns - facts.created_at, 0) / NANOSECONDS_PER_DAY
        tier = DEFAULT_TIER if facts.kyc_tier is None else facts.kyc_tier
        residence = facts.residence_country or ""
    return {
        "user_history_count": 0 if history is None else history.count,
        "amount_zscore": 0.0 if history is None else history.zscore(movement.amount),
        "new_device": keys.devices is not None
        and movement.device_id is not None
        and device_pair not in snapshot.seen,
        "new_payee": keys.payees is not None
        and bool(movement.payee)
        and payee_pair not in snapshot.seen,
        "account_age_days": age_days,
        "kyc_tier": tier,
        "residence_country": residence,
        "failed_logins_24h": security.failed_logins,
        "mfa_failures_24h": security.mfa_failures,
    }


def feature_source_from_settings(
    settings: Settings, unit_of_work: UnitOfWork | None = None
) -> FeatureComputer:
    """The feature computer `settings` ask for (`risk_counters`: auto = Redis when
    `redis_url` is set, else the database). The caller closes it (`aclose`) at shutdown:
    it owns its Redis client."""
    choice = settings.risk_counters
    if choice == "auto":
        choice = "redis" if settings.redis_url is not None else "database"
    closing = None
    counters: CounterStore
    if choice == "memory":
        counters = MemoryCounters(keys_max=settings.risk_counters_memory_keys_max)
    elif choice == "database":
        counters = DatabaseCounters(unit_of_work=unit_of_work)
    else:
        invariant(
            settings.redis_url is not None, "the settings refuse redis counters without a URL"
        )
        assert settings.redis_url is not None
        from redis.asyncio import Redis

        client = Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
        )
        counters = RedisCounters(client, prefix=settings.risk_counters_redis_prefix)
        closing = client.aclose
    table = (
        None
        if settings.risk_ip_countries is None
        else load_ip_countries(settings.risk_ip_countries)
    )
    return FeatureComputer(
        counters,
        ip_countries=table,
        user_facts_ttl_s=settings.risk_user_facts_ttl_s,
        closing=closing,
    )


async def bench_compute(
    source: FeatureComputer, session: AsyncSession, movements: Sequence[Movement]
) -> dict[str, float]:
    """A micro-benchmark (not a test): `compute` then `record` each movement in order;
    the compute latency's median and 99th percentile in microseconds."""
    invariant(len(movements) >= 2, "a benchmark needs a few movements")
    latencies_us = []
    for movement in movements:
        started = time.perf_counter()
        await source.compute(session, movement)
        latencies_us.append((time.perf_counter() - started) * 1e6)
        await source.record(session, movement)
    cuts = statistics.quantiles(latencies_us, n=100)
    return {"compute_p50_us": statistics.median(latencies_us), "compute_p99_us": cuts[98]}


PURGE_BATCH = 5_000
"""Expired counter rows deleted per transaction (a sweep repeats until none are left)."""


async def purge_risk_counters(
    unit_of_work: UnitOfWork, *, now_ns: int, rounds_max: int = 20
) -> int:
    """Delete the database velocity counters past their expiry (windows no feature reads
    any more), in bounded transactions; how many rows went."""
    return await unit_of_work.delete_in_batches(
        lambda session, limit: repository.purge_expired_counters(
            session, now_ns=now_ns, limit=limit
        ),
        batch=PURGE_BATCH,
        rounds_max=rounds_max,
    )
