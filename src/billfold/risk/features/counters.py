"""Velocity counters for risk features: how many movements, and how much money, a key
(a user, a device, a payee, an IP address) moved over the last minute, hour, day and 30
days; whether a member was seen before in a set (this device for this user, this payee
for this user); and a running history of amounts (count, sum, sum of squares) for the
amount's z-score.

Three backends keep the same contract (``tests/risk/features/test_counters.py`` runs one
test suite against each):

- `MemoryCounters`: in the process, microseconds. Per process: with several API
  processes each sees only its own movements, and a restart forgets everything. Bounded:
  each window keeps only the buckets it can still reach, and at most ``keys_max`` keys
  (least recently used out; a forgotten device or payee is "new" again, the conservative
  side). A key holds at most 288 buckets (12 + 60 + 96 + 120), a few hundred bytes for a
  typical key and about 40 KB for one busy in every bucket of 30 days.
- `RedisCounters`: shared by every process; one round trip (a Lua script) to read every
  counter of a decision and one to record a movement. Keys carry a tenant-scoped prefix
  (``<prefix>:{<tenant hex>:<mode>}:…``, the braces keep one tenant's keys in one cluster
  slot) and expire 31 days after their last write, so "seen" sets and histories of a key
  idle for that long are forgotten. Lua numbers are doubles: sums stay exact up to 2**53.
- `DatabaseCounters`: the `risk_counters` table, on SQLite and PostgreSQL; the default when
  several processes share one database and there is no Redis. One query reads everything,
  one upsert records. On PostgreSQL, given a unit of work, the counters are written in
  their own short transaction, so a busy payee's rows are not locked for as long as the
  movement's transaction lasts; on SQLite (one writer at a time) they are written in the
  caller's session. Expired velocity rows are deleted by `purge_expired_counters`.

Counters are not transactional with the movement: a movement recorded and then rolled back
(PostgreSQL, Redis, memory) stays counted. That errs on the safe side: velocity looks
higher, never lower.

Windows are aligned to their buckets: a window of length L made of buckets of width w
covers the current bucket and the L/w - 1 before it, so it reaches between L - w and L
into the past (the 1-minute window: 55 to 60 s; the 30-day window: 29¾ to 30 days). Each
counted amount is capped at `AMOUNT_COUNTED_MAX`, and each stored sum (a bucket's, a
history's) stops at `AMOUNT_SUM_MAX`, so neither a write nor a window's read overflows
64-bit integers however busy a key (a shared payee such as `fx:ETH`) or long its history.
Histories are kept for all time (Redis: until 31 days idle).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.db import UnitOfWork
from billfold.kit.errors import invariant
from billfold.risk.features import repository
from billfold.risk.features.models import AMOUNT_SUM_MAX, COUNTER_KEY_LENGTH_MAX

__all__ = [
    "AMOUNT_COUNTED_MAX",
    "AMOUNT_SUM_MAX",
    "COUNTER_TTL_S",
    "WINDOWS",
    "CounterRead",
    "CounterSnapshot",
    "CounterStore",
    "CounterWrite",
    "DatabaseCounters",
    "History",
    "MemoryCounters",
    "RedisCounters",
    "Tally",
    "Window",
    "counter_key",
]

NANOSECONDS_PER_SECOND = 1_000_000_000
AMOUNT_COUNTED_MAX = 10**15
"""Minor units one movement adds at most to a sum (10 trillion euros; 0.001 ETH)."""
COUNTER_TTL_S = 31 * 86_400
"""Redis keys live this long after their last write: slightly more than the longest window."""
KEYS_PER_CALL_MAX = 64
"""Most keys, members and histories one read or write names (a decision needs about 12)."""
invariant(KEYS_PER_CALL_MAX * AMOUNT_COUNTED_MAX < AMOUNT_SUM_MAX, "one write fits a sum")


@dataclass(frozen=True, slots=True)
class Window:
    """A sliding window made of fixed buckets."""

    name: str
    length_s: int
    bucket_s: int

    @property
    def buckets(self) -> int:
        return self.length_s // self.bucket_s

    def bucket_of(self, at_ns: int) -> int:
        return at_ns // (self.bucket_s * NANOSECONDS_PER_SECOND)

    def first_bucket(self, now_ns: int) -> int:
        """The oldest bucket the window reaches at `now_ns` (the newest is `bucket_of`)."""
        return self.bucket_of(now_ns) - self.buckets + 1

    def expires_at_ns(self, bucket: int) -> int:
        """When the window no longer reaches `bucket`."""
        return (bucket + self.buckets) * self.bucket_s * NANOSECONDS_PER_SECOND

    def covers(self, *, at_ns: int, now_ns: int) -> bool:
        """Whether an event at `at_ns` counts in the window at `now_ns` (the definition
        every backend implements)."""
        return self.first_bucket(now_ns) <= self.bucket_of(at_ns) <= self.bucket_of(now_ns)


WINDOWS = (
    Window("1m", 60, 5),
    Window("1h", 3600, 60),
    Window("24h", 86_400, 900),
    Window("30d", 30 * 86_400, 6 * 3600),
)
for _window in WINDOWS:
    invariant(_window.length_s % _window.bucket_s == 0, "a window is whole buckets")
invariant(len(WINDOWS) <= 9, "the Redis read script parses one-digit window numbers")
invariant(
    max(window.buckets for window in WINDOWS) * AMOUNT_SUM_MAX < 2**63,
    "a window's sum of saturated buckets fits a signed 64-bit integer",
)


def counter_key(*parts: str) -> str:
    """A counter key from its parts, hashed when it would be longer than the table allows
    (a payee may be 200 characters)."""
    key = ":".join(parts)
    if len(key) <= COUNTER_KEY_LENGTH_MAX:
        return key
    return f"{parts[0]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def capped(amount: int) -> int:
    return min(max(amount, 0), AMOUNT_COUNTED_MAX)


def _saturated(total: float, amount: int) -> float:
    """A stored sum with `amount` added, stopping at `AMOUNT_SUM_MAX` (as every store)."""
    return min(total + amount, AMOUNT_SUM_MAX)


@dataclass(frozen=True, slots=True)
class Tally:
    """Movements counted in one window, and their amounts' sum."""

    count: int = 0
    amount: int = 0


@dataclass(frozen=True, slots=True)
class History:
    """A running history of one key's amounts."""

    count: int = 0
    total: float = 0.0
    total_squares: float = 0.0

    def zscore(self, amount: int, *, count_min: int = 5, cap: float = 100.0) -> float:
        """How many standard deviations `amount` lies from the history's mean; 0.0 with
        fewer than `count_min` past amounts. Capped at ±`cap`, and the deviation is at
        least one minor unit (a user who always paid the same amount)."""
        if self.count < count_min:
            return 0.0
        mean = self.total / self.count
        variance = max(self.total_squares / self.count - mean * mean, 0.0)
        deviation = max(math.sqrt(variance), 1.0)
        return max(-cap, min(cap, (capped(amount) - mean) / deviation))


@dataclass(frozen=True, slots=True)
class CounterRead:
    """Everything one decision reads, in one call."""

    tenant_id: uuid.UUID
    mode: str
    now_ns: int
    keys: tuple[str, ...] = ()
    """Velocity keys: each gets a `Tally` per window."""
    members: tuple[tuple[str, str], ...] = ()
    """(set, member) pairs: was the member remembered in the set?"""
    histories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        invariant(
            len(self.keys) + len(self.members) + len(self.histories) <= KEYS_PER_CALL_MAX,
            "a counter read is bounded",
        )


@dataclass(frozen=True, slots=True)
class CounterWrite:
    """Everything one movement records, in one call."""

    tenant_id: uuid.UUID
    mode: str
    at_ns: int
    adds: tuple[tuple[str, int], ...] = ()
    """(key, amount): count 1 and add the amount in every window."""
    remember: tuple[tuple[str, str], ...] = ()
    """(set, member) pairs to remember."""
    histories: tuple[tuple[str, int], ...] = ()
    """(key, amount) to add to a running history."""

    def __post_init__(self) -> None:
        invariant(
            len(self.adds) + len(self.remember) + len(self.histories) <= KEYS_PER_CALL_MAX,
            "a counter write is bounded",
        )


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    tallies: Mapping[str, Mapping[str, Tally]] = field(default_factory=dict)
    """key → window name → tally (every key and window read is present)."""
    seen: frozenset[tuple[str, str]] = frozenset()
    """The (set, member) pairs read that were remembered."""
    histories: Mapping[str, History] = field(default_factory=dict)

    def tally(self, key: str, window: str) -> Tally:
        return self.tallies.get(key, {}).get(window, Tally())

    def history(self, key: str) -> History:
        return self.histories.get(key, History())


class CounterStore(Protocol):
    """Where velocity counters live. `session` is the decision's database session: the
    database backend reads (and on SQLite writes) through it, the others ignore it."""

    async def read(self, session: AsyncSession | None, request: CounterRead) -> CounterSnapshot:
        """Every tally, membership and history `request` names, as of `request.now_ns`."""
        ...

    async def write(self, session: AsyncSession | None, request: CounterWrite) -> None:
        """Count one movement at `request.at_ns`."""
        ...


# --- in the process -----------------------------------------------------------------------

_Buckets = dict[int, list[int]]
"""bucket → [count, amount], oldest first."""


class MemoryCounters:
    """Counters in this process (see the module docstring for what that implies)."""

    def __init__(self, *, keys_max: int = 100_000) -> None:
        invariant(keys_max >= 1, "the memory counters hold at least one key")
        self._keys_max = keys_max
        self._tallies: OrderedDict[tuple[uuid.UUID, str, str], list[_Buckets]] = OrderedDict()
        self._seen: OrderedDict[tuple[uuid.UUID, str, str, str], None] = OrderedDict()
        self._histories: OrderedDict[tuple[uuid.UUID, str, str], list[float]] = OrderedDict()

    def __len__(self) -> int:
        """Keys held (velocity keys, seen members and histories)."""
        return len(self._tallies) + len(self._seen) + len(self._histories)

    async def read(self, session: AsyncSession | None, request: CounterRead) -> CounterSnapshot:
        return self.read_now(request)

    async def write(self, session: AsyncSession | None, request: CounterWrite) -> None:
        self.write_now(request)

    def read_now(self, request: CounterRead) -> CounterSnapshot:
        scope = (request.tenant_id, request.mode)
        bounds = [
            (window.name, window.first_bucket(request.now_ns), window.bucket_of(request.now_ns))
            for window in WINDOWS
        ]
        tallies = {
            key: _window_tallies(self._tallies.get((*scope, key)), bounds) for key in request.keys
        }
        seen = frozenset(pair for pair in request.members if (*scope, *pair) in self._seen)
        histories = {}
        for key in request.histories:
            stats = self._histories.get((*scope, key))
            if stats is not None:
                histories[key] = History(int(stats[0]), stats[1], stats[2])
        return CounterSnapshot(tallies=tallies, seen=seen, histories=histories)

    def write_now(self, request: CounterWrite) -> None:
        scope = (request.tenant_id, request.mode)
        for key, amount in request.adds:
            windows = self._touch(self._tallies, (*scope, key), lambda: [{} for _ in WINDOWS])
            for window, buckets in zip(WINDOWS, windows, strict=True):
                _add(buckets, window, at_ns=request.at_ns, amount=capped(amount))
        for pair in request.remember:
            self._touch(self._seen, (*scope, *pair), lambda: None)
        for key, amount in request.histories:
            stats = self._touch(self._histories, (*scope, key), lambda: [0.0, 0.0, 0.0])
            counted = capped(amount)
            stats[0] += 1
            stats[1] = _saturated(stats[1], counted)
            stats[2] += float(counted) * counted

    def _touch(self, table: OrderedDict[Any, Any], key: Any, new: Any) -> Any:
        """The entry at `key` (created by `new()`), now the most recently used; the least
        recently used entries beyond `keys_max` are dropped."""
        value = table.get(key)
        if value is None and key not in table:
            value = table[key] = new()
            while len(table) > self._keys_max:
                table.popitem(last=False)
        else:
            table.move_to_end(key)
        return value


def _add(buckets: _Buckets, window: Window, *, at_ns: int, amount: int) -> None:
    bucket = window.bucket_of(at_ns)
    counted = buckets.get(bucket)
    if counted is None:
        buckets[bucket] = [1, amount]
    else:
        counted[0] += 1
        counted[1] = int(_saturated(counted[1], amount))
    # Evict what the window can no longer reach (seen from the newest bucket held).
    if len(buckets) > 1:
        newest = max(bucket, next(reversed(buckets)))
        oldest_kept = newest - window.buckets + 1
        if len(buckets) > window.buckets or next(iter(buckets)) < oldest_kept:
            for stale in [held for held in buckets if held < oldest_kept]:
                del buckets[stale]


def _window_tallies(
    windows: list[_Buckets] | None, bounds: list[tuple[str, int, int]]
) -> dict[str, Tally]:
    """Per window (name, first bucket, last bucket), the sum of the buckets it covers."""
    if windows is None:
        return {name: Tally() for name, _first, _last in bounds}
    tallies = {}
    for (name, first, last), buckets in zip(bounds, windows, strict=True):
        count = amount = 0
        for bucket, counted in buckets.items():
            if first <= bucket <= last:
                count += counted[0]
                amount += counted[1]
        tallies[name] = Tally(count, amount)
    return tallies


# --- Redis --------------------------------------------------------------------------------

# Each velocity key is one hash: per window a ring of `buckets` slots, fields
# `<window>:b:<slot>` (the bucket the slot holds), `:c:` (count) and `:a:` (amount).
# Sums stop at `sum_max`: HINCRBY is exact, but its answer reaches Lua as a double, so near
# the bound the stored decimal string is compared instead.
_REDIS_WRITE = f"""
local sum_max = '{AMOUNT_SUM_MAX}'
local function add_amount(key, field, amount)
  if redis.call('HINCRBY', key, field, amount) >= tonumber(sum_max) then
    local sum = redis.call('HGET', key, field)
    if #sum > #sum_max or (#sum == #sum_max and sum > sum_max) then
      redis.call('HSET', key, field, sum_max)
    end
  end
end
local ttl_ms = tonumber(ARGV[1])
local t, s, h, w = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local at = 6 + 2 * w
for i = 1, t do
  local key, amount = KEYS[i], ARGV[at]
  at = at + 1
  for window = 1, w do
    local bucket = tonumber(ARGV[4 + 2 * window])
    local slot = bucket % tonumber(ARGV[5 + 2 * window])
    local prefix = window .. ':'
    local held = redis.call('HGET', key, prefix .. 'b:' .. slot)
    if held == false or tonumber(held) < bucket then
      redis.call('HSET', key, prefix .. 'b:' .. slot, bucket, prefix .. 'c:' .. slot, 1,
        prefix .. 'a:' .. slot, amount)
    elseif tonumber(held) == bucket then
      redis.call('HINCRBY', key, prefix .. 'c:' .. slot, 1)
      add_amount(key, prefix .. 'a:' .. slot, amount)
    end
  end
  redis.call('PEXPIRE', key, ttl_ms)
end
for i = 1, s do
  redis.call('SADD', KEYS[t + i], ARGV[at])
  redis.call('PEXPIRE', KEYS[t + i], ttl_ms)
  at = at + 1
end
for i = 1, h do
  local key = KEYS[t + s + i]
  redis.call('HINCRBY', key, 'n', 1)
  add_amount(key, 's', ARGV[at])
  redis.call('HINCRBYFLOAT', key, 'q', ARGV[at + 1])
  redis.call('PEXPIRE', key, ttl_ms)
  at = at + 2
end
return 1
"""

_REDIS_READ = """
local t, s, h, w = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 1, t do
  local flat = redis.call('HGETALL', KEYS[i])
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  local counts, amounts = {}, {}
  for window = 1, w do counts[window] = 0; amounts[window] = 0 end
  -- Only the slots held (`<window>:b:<slot>` fields), not every slot of every window.
  for j = 1, #flat, 2 do
    local name = flat[j]
    if string.sub(name, 2, 3) == ':b' then
      local window = tonumber(string.sub(name, 1, 1))
      local bucket = tonumber(flat[j + 1])
      if bucket >= tonumber(ARGV[2 + 3 * window]) and bucket <= tonumber(ARGV[3 + 3 * window]) then
        local slot = string.sub(name, 4)
        counts[window] = counts[window] + tonumber(fields[window .. ':c' .. slot])
        amounts[window] = amounts[window] + tonumber(fields[window .. ':a' .. slot])
      end
    end
  end
  for window = 1, w do
    out[#out + 1] = counts[window]
    out[#out + 1] = amounts[window]
  end
end
for i = 1, s do
  out[#out + 1] = redis.call('SISMEMBER', KEYS[t + i], ARGV[4 + 3 * w + i])
end
for i = 1, h do
  local stats = redis.call('HMGET', KEYS[t + s + i], 'n', 's', 'q')
  out[#out + 1] = stats[1] or '0'
  out[#out + 1] = stats[2] or '0'
  out[#out + 1] = stats[3] or '0'
end
return out
"""


class RedisCounters:
    """Counters in Redis (see the module docstring). `client` is a `redis.asyncio.Redis`
    (or anything with its `register_script`); the caller owns it and closes it."""

    def __init__(self, client: Any, *, prefix: str = "billfold:risk") -> None:
        self._prefix = prefix
        self._write = client.register_script(_REDIS_WRITE)
        self._read = client.register_script(_REDIS_READ)

    def _scope(self, tenant_id: uuid.UUID, mode: str) -> str:
        return f"{self._prefix}:{{{tenant_id.hex}:{mode}}}"

    async def read(self, session: AsyncSession | None, request: CounterRead) -> CounterSnapshot:
        scope = self._scope(request.tenant_id, request.mode)
        keys = [f"{scope}:v:{key}" for key in request.keys]
        keys += [f"{scope}:s:{name}" for name, _member in request.members]
        keys += [f"{scope}:h:{key}" for key in request.histories]
        arguments: list[int | str] = [
            len(request.keys),
            len(request.members),
            len(request.histories),
            len(WINDOWS),
        ]
        for window in WINDOWS:
            arguments += [
                window.first_bucket(request.now_ns),
                window.bucket_of(request.now_ns),
                window.buckets,
            ]
        arguments += [member for _name, member in request.members]
        answer = await self._read(keys=keys, args=arguments)
        return _snapshot(request, [_text(value) for value in answer])

    async def write(self, session: AsyncSession | None, request: CounterWrite) -> None:
        scope = self._scope(request.tenant_id, request.mode)
        keys = [f"{scope}:v:{key}" for key, _amount in request.adds]
        keys += [f"{scope}:s:{name}" for name, _member in request.remember]
        keys += [f"{scope}:h:{key}" for key, _amount in request.histories]
        arguments: list[int | str] = [
            COUNTER_TTL_S * 1000,
            len(request.adds),
            len(request.remember),
            len(request.histories),
            len(WINDOWS),
        ]
        for window in WINDOWS:
            arguments += [window.bucket_of(request.at_ns), window.buckets]
        arguments += [capped(amount) for _key, amount in request.adds]
        arguments += [member for _name, member in request.remember]
        for _key, amount in request.histories:
            counted = capped(amount)
            arguments += [counted, repr(float(counted) * counted)]
        await self._write(keys=keys, args=arguments)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _snapshot(request: CounterRead, values: Sequence[str]) -> CounterSnapshot:
    """The read script's flat answer, in the order the request named things."""
    invariant(
        len(values)
        == 2 * len(WINDOWS) * len(request.keys) + len(request.members) + 3 * len(request.histories),
        "the read script answers every key",
    )
    position = 0
    tallies: dict[str, dict[str, Tally]] = {}
    for key in request.keys:
        tallies[key] = {}
        for window in WINDOWS:
            count, amount = int(values[position]), int(values[position + 1])
            tallies[key][window.name] = Tally(count, amount)
            position += 2
    seen = set()
    for pair in request.members:
        if int(values[position]) == 1:
            seen.add(pair)
        position += 1
    histories = {}
    for key in request.histories:
        stored_count, total, squares = values[position : position + 3]
        position += 3
        if int(stored_count) > 0:
            histories[key] = History(int(stored_count), float(total), float(squares))
    return CounterSnapshot(tallies=tallies, seen=frozenset(seen), histories=histories)


# --- the database -------------------------------------------------------------------------


class DatabaseCounters:
    """Counters in the `risk_counters` table (see the module docstring). With
    `unit_of_work`, PostgreSQL writes commit in their own short transaction; without one,
    or on SQLite, they go through the caller's session."""

    def __init__(self, *, unit_of_work: UnitOfWork | None = None) -> None:
        self._unit_of_work = unit_of_work

    async def read(self, session: AsyncSession | None, request: CounterRead) -> CounterSnapshot:
        invariant(session is not None, "the database counters read through a session")
        assert session is not None  # for mypy; invariant() raised otherwise
        members = {_member_key(name, member): (name, member) for name, member in request.members}
        histories = {_history_key(key): key for key in request.histories}
        rows = await repository.read_counters(
            session,
            tenant_id=request.tenant_id,
            mode=request.mode,
            velocity_keys=list(request.keys),
            kept_keys=[*members, *histories],
            windows=[
                (
                    window.bucket_s,
                    window.first_bucket(request.now_ns),
                    window.bucket_of(request.now_ns),
                )
                for window in WINDOWS
            ],
        )
        widths = {window.bucket_s: window.name for window in WINDOWS}
        tallies: dict[str, dict[str, Tally]] = {
            key: {window.name: Tally() for window in WINDOWS} for key in request.keys
        }
        seen = set()
        found_histories = {}
        for row in rows:
            if row.width_s in widths and row.key in tallies:
                tallies[row.key][widths[row.width_s]] = Tally(row.count, row.amount)
            elif row.key in members:
                seen.add(members[row.key])
            elif row.key in histories:
                found_histories[histories[row.key]] = History(
                    row.count, float(row.amount), row.amount_squares
                )
        return CounterSnapshot(tallies=tallies, seen=frozenset(seen), histories=found_histories)

    async def write(self, session: AsyncSession | None, request: CounterWrite) -> None:
        rows = _counter_rows(request)
        own = self._unit_of_work is not None and (
            session is None or session.get_bind().dialect.name == "postgresql"
        )
        if own:
            assert self._unit_of_work is not None
            async with self._unit_of_work.begin() as own_session:
                await repository.add_counters(
                    own_session, tenant_id=request.tenant_id, mode=request.mode, rows=rows
                )
            return
        invariant(session is not None, "the database counters write through a session")
        assert session is not None
        await repository.add_counters(
            session, tenant_id=request.tenant_id, mode=request.mode, rows=rows
        )


def _member_key(name: str, member: str) -> str:
    return counter_key("seen", name, member)


def _history_key(key: str) -> str:
    return counter_key("history", key)


def _counter_rows(request: CounterWrite) -> list[repository.CounterRow]:
    """One row per key and window (summed when a key repeats), then the members and
    histories, in primary-key order (concurrent upserts lock rows in the same order)."""
    # (key, width, bucket) -> [count, amount, amount squares, expires at]
    sums: dict[tuple[str, int, int], list[Any]] = {}

    def add(place: tuple[str, int, int], amount: int, squares: float, expires: int | None) -> None:
        held = sums.get(place)
        if held is None:
            sums[place] = [1, amount, squares, expires]
        else:
            held[0] += 1
            held[1] += amount
            held[2] += squares

    buckets = [(window, window.bucket_of(request.at_ns)) for window in WINDOWS]
    expiries = [window.expires_at_ns(bucket) for window, bucket in buckets]
    for key, amount in request.adds:
        counted = capped(amount)
        for (window, bucket), expires in zip(buckets, expiries, strict=True):
            add((key, window.bucket_s, bucket), counted, 0.0, expires)
    for name, member in request.remember:
        add((_member_key(name, member), 0, 0), 0, 0.0, None)
    for key, amount in request.histories:
        counted = capped(amount)
        add((_history_key(key), 0, 0), counted, float(counted) * counted, None)
    return [
        repository.CounterRow(key, width_s, bucket, count, amount, squares, expires)
        for (key, width_s, bucket), (count, amount, squares, expires) in sorted(sums.items())
    ]
