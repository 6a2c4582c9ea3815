"""Every query of the events domain. Functions take the caller's session and never commit.

`FOR UPDATE SKIP LOCKED` is what lets several workers share the work on PostgreSQL; SQLite
renders no row locks (SQLAlchemy drops the clause) and runs one worker, whose transactions
take the database's write lock anyway.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    Text,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from billfold.events.models import (
    EventCursor,
    InboundEvent,
    OutboxEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from billfold.events.types import EVENT_PARTITIONS, Event, Reads, compact_json
from billfold.kit.db import UnitOfWork
from billfold.kit.driver import DriverStatement
from billfold.kit.upsert import insert_if_absent

__all__ = [
    "SEQUENCER",
    "claim_cursors",
    "copy_event_records",
    "cursor_claim",
    "ensure_cursors",
    "event_of",
    "events_after",
    "fetch_pg",
    "insert_events",
    "last_seq",
    "lock_sequencer",
    "number_unsequenced",
]

SEQUENCER = "sequencer"


_EVENT_COLUMNS: tuple[ColumnElement[Any] | InstrumentedAttribute[Any], ...] = (
    OutboxEvent.id,
    OutboxEvent.tenant_id,
    OutboxEvent.mode,
    OutboxEvent.type,
    OutboxEvent.subject,
    OutboxEvent.aggregate_id,
    OutboxEvent.partition,
    OutboxEvent.data,
    OutboxEvent.occurred_at,
    OutboxEvent.seq,
)
"""Read as plain rows: building ORM objects costs more than the query at dispatch rates."""


_RAW_DATA: ColumnElement[Any] = cast(OutboxEvent.data, Text).label("data")
_RAW_COLUMNS = (*_EVENT_COLUMNS[:7], _RAW_DATA, *_EVENT_COLUMNS[8:])
"""The payload as its stored JSON text (`CAST(data AS TEXT)`): neither the driver nor
SQLAlchemy decodes it."""


_new_object = object.__new__
(
    _SET_ID,
    _SET_TENANT_ID,
    _SET_MODE,
    _SET_TYPE,
    _SET_SUBJECT,
    _SET_AGGREGATE_ID,
    _SET_PARTITION,
    _SET_DATA,
    _SET_OCCURRED_AT,
    _SET_SEQ,
    _SET_DATA_JSON,
) = (getattr(Event, field.name).__set__ for field in fields(Event))
"""`Event`'s slots, set directly: its frozen dataclass `__init__` assigns every field
through `object.__setattr__`, 4.5 µs an event against 1.8 here, and the worker builds one
per event for each channel that reads it."""


def _event(row: Any, *, raw: bool = False) -> Event:
    """An event from a row of `_EVENT_COLUMNS`, or of `_RAW_COLUMNS` with `raw`: what
    `Event(…)` would make of it, field for field."""
    payload = row[7]
    event: Event = _new_object(Event)
    _SET_ID(event, row[0])
    _SET_TENANT_ID(event, row[1])
    _SET_MODE(event, row[2])
    _SET_TYPE(event, row[3])
    _SET_SUBJECT(event, row[4])
    _SET_AGGREGATE_ID(event, row[5])
    _SET_PARTITION(event, row[6])
    _SET_DATA(event, {} if raw else (payload or {}))
    _SET_OCCURRED_AT(event, row[8])
    _SET_SEQ(event, -1 if row[9] is None else row[9])
    _SET_DATA_JSON(event, ("{}" if payload is None else payload) if raw else None)
    return event


async def _driver(session: AsyncSession) -> asyncpg.Connection | None:
    """On PostgreSQL, the asyncpg connection under the session, inside the session's
    transaction (begun first if no statement has begun it yet); None on SQLite.

    The worker's reads of many events go through it: SQLAlchemy's rows and ORM loading cost
    3 to 5 µs an event each time one is read (and the log is read once per channel), where
    asyncpg's records are built in C."""
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():  # SQLAlchemy's driver adapter begins lazily
        await connection.exec_driver_sql("SELECT 1")
    return driver


_PG_EVENT_COLUMNS = (
    "id, tenant_id, mode, type, subject, aggregate_id, partition, {data}, occurred_at, seq"
)
_PG_DATA = {Reads.DATA: "data::text", Reads.RAW: "data::text", Reads.ROWS: "NULL::text"}


def _pg_events_query(reads: Reads, where: str, *, tail: str = "") -> str:
    columns = _PG_EVENT_COLUMNS.format(data=_PG_DATA[reads])
    return f"SELECT {columns} FROM events_outbox WHERE {where}{tail}"


def _pg_event(record: Any, reads: Reads) -> Event:
    """An event from a record of `_pg_events_query`, whose payload is text: decoded for
    `Reads.DATA`, kept as text for `Reads.RAW`, absent for `Reads.ROWS`."""
    if reads is Reads.DATA and record[7] is not None:
        record = (*record[:7], json.loads(record[7]), *record[8:])
    return _event(record, raw=reads is Reads.RAW)


async def _copy(session: AsyncSession, table: str, rows: Sequence[dict[str, Any]]) -> bool:
    """COPY `rows` into `table` on PostgreSQL, in the session's transaction (several times
    faster than a multi-row INSERT); False on SQLite, where the caller inserts."""
    driver = await _driver(session)
    if driver is None:
        return False
    columns = list(rows[0])
    first = rows[0]
    encoded = [i for i, value in enumerate(first.values()) if isinstance(value, dict | list)]
    if not encoded:
        records = [tuple(row.values()) for row in rows]
    else:  # JSON columns (the same in every row): encode those alone
        records = []
        for row in rows:
            record = list(row.values())
            for i in encoded:
                record[i] = compact_json(record[i])
            records.append(tuple(record))
    await driver.copy_records_to_table(table, columns=columns, records=records)
    return True


_INDEX_PLANS = text(
    "SELECT set_config('enable_seqscan', 'off', true),"
    " set_config('enable_bitmapscan', 'off', true),"
    " set_config('enable_sort', 'off', true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true),"
    " set_config('jit', 'off', true)"
)


async def plan_with_indexes(session: AsyncSession) -> None:
    """On PostgreSQL, plan the rest of this transaction's queries as index walks that stop
    at their limit (nothing else: the settings end with the transaction). For the worker's
    rounds over the outbox and the deliveries, whose statistics are stale or missing while
    they grow or churn (a table made an hour ago and filled since; each delivery row is
    written two or three times in seconds): with them PostgreSQL read every event after
    the lowest cursor, or every pending delivery, dead entries included, and sorted them,
    to return the first thousand, and looked a thousand ids up by a sequential scan. That is
    O(backlog) per round, seconds under one, while holding row locks the other workers
    waited for. `force_custom_plan`: asyncpg prepares each statement once per connection,
    and a generic plan kept after five runs would not see this run's values. `jit` off: a
    node these settings disable is still planned where nothing else can do (the cursor
    claim's ORDER BY needs a sort), at a cost of 10^10 that crosses every JIT threshold,
    and PostgreSQL then compiled that 16-row query with LLVM at every round: 50 to 150 ms
    of server CPU each, most of a core under load."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(_INDEX_PLANS)


async def _ids_in(
    session: AsyncSession, column: InstrumentedAttribute[uuid.UUID], ids: Collection[uuid.UUID]
) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL `column = ANY(:ids)`, one array parameter, where an
    IN list of a thousand ids is a thousand parameters to render and bind."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(Uuid()), unique=True))
    return column.in_(list(ids))


def event_of(row: OutboxEvent) -> Event:
    return Event(
        id=row.id,
        tenant_id=row.tenant_id,
        mode=row.mode,
        type=row.type,
        subject=row.subject,
        aggregate_id=row.aggregate_id,
        partition=row.partition,
        data=row.data,
        occurred_at=row.occurred_at,
        seq=-1 if row.seq is None else row.seq,
    )


# -- cursors


async def ensure_cursors(
    session: AsyncSession, *, channel: str, partitions: int, now_ns: int
) -> None:
    """Create the channel's cursor rows that do not exist yet, at position 0. Workers
    starting together may both find a row missing: the second insert then does nothing
    (it used to fail on the key, and that worker died at start)."""
    existing = set(
        (
            await session.scalars(
                select(EventCursor.partition).where(EventCursor.channel == channel)
            )
        ).all()
    )
    for partition in range(partitions):
        if partition not in existing:
            values = {"channel": channel, "partition": partition, "position": 0}
            await insert_if_absent(session, EventCursor, {**values, "updated_at": now_ns})


# The worker's per-round statements, built once: building one anew costs the worker more
# CPU than PostgreSQL spends running it (SQLAlchemy also memoizes a statement's cache key).
_SEQUENCER_CURSOR = (EventCursor.channel == SEQUENCER, EventCursor.partition == 0)
_SEQUENCER_POSITION = select(EventCursor.position).where(*_SEQUENCER_CURSOR)
_LOCK_SEQUENCER = select(EventCursor).where(*_SEQUENCER_CURSOR).with_for_update(skip_locked=True)
_UNSEQUENCED = select(OutboxEvent.id).where(OutboxEvent.seq.is_(None)).limit(1)
_TENANTS_WITH_ENDPOINTS = (
    select(WebhookEndpoint.tenant_id).where(WebhookEndpoint.status == "enabled").distinct()
)


async def sequencer_position(session: AsyncSession) -> int:
    """The last ledger timestamp the sequencer copied (read without a lock)."""
    value = await session.scalar(_SEQUENCER_POSITION)
    return int(value or 0)


async def lock_sequencer(session: AsyncSession) -> EventCursor | None:
    """The sequencer's cursor, locked; None when another worker holds it."""
    found: EventCursor | None = await session.scalar(_LOCK_SEQUENCER)
    return found


async def claim_cursors(
    session: AsyncSession, *, channel: str, limit: int, offset: int, lock: bool
) -> list[EventCursor]:
    """Up to `limit` of the channel's partitions that no other worker holds, locked until
    the transaction ends; starting from partition `offset`, so workers spread out."""
    query = cursor_claim(channel=channel, limit=limit, offset=offset, lock=lock)
    return list((await session.scalars(query)).all())


@functools.lru_cache(maxsize=256)
def cursor_claim(*, channel: str, limit: int, offset: int, lock: bool) -> Select[EventCursor]:
    """The statement of `claim_cursors`, built once per argument set (a few dozen: the
    offset is one of `EVENT_PARTITIONS`): building it anew each round took more of the
    worker's CPU under load than running it."""
    query = (
        select(EventCursor)
        .where(EventCursor.channel == channel)
        .order_by((EventCursor.partition + offset) % EVENT_PARTITIONS)
        .limit(limit)
    )
    return query.with_for_update(skip_locked=True) if lock else query


_END_IF_BEHIND = DriverStatement(
    select(
        select(func.coalesce(func.max(OutboxEvent.seq), 0)).scalar_subquery(),
        select(func.min(EventCursor.position))
        .where(EventCursor.channel == bindparam("channel", type_=String()))
        .scalar_subquery(),
    )
)


async def end_if_behind(unit_of_work: UnitOfWork, *, channel: str) -> int | None:
    """The end of the log (its last `seq`) when one of the channel's cursors is behind it,
    else None: one statement run alone (`UnitOfWork.fetch_alone`), for the looks idle
    loops take many times a second."""
    [row] = await unit_of_work.fetch_alone(_END_IF_BEHIND, {"channel": channel})
    end, low = int(row[0]), row[1]
    return end if low is not None and int(low) < end else None


# -- the log


_LAST_SEQ = select(func.max(OutboxEvent.seq))


async def last_seq(session: AsyncSession) -> int:
    value = await session.scalar(_LAST_SEQ)
    return int(value or 0)


async def has_unsequenced(session: AsyncSession) -> bool:
    """Whether a committed row waits for its `seq`."""
    found = await session.scalar(_UNSEQUENCED)
    return found is not None


_NUMBER = text(
    "UPDATE events_outbox SET seq = :last_seq + numbered.n"
    " FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events_outbox"
    " WHERE seq IS NULL ORDER BY id LIMIT :limit) AS numbered"
    " WHERE events_outbox.id = numbered.id"
)


async def number_unsequenced(session: AsyncSession, *, last_seq: int, limit: int) -> int:
    """Number up to `limit` committed rows without a `seq` (oldest id first) from
    `last_seq + 1` on, in one UPDATE; how many it numbered."""
    result = await session.execute(_NUMBER, {"last_seq": last_seq, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def fetch_pg(session: AsyncSession, query: str, *arguments: Any) -> list[Any]:
    """PostgreSQL only: the asyncpg records of `query` (`$n` parameters), in the session's
    transaction."""
    driver = await _driver(session)
    if driver is None:
        raise RuntimeError("fetch_pg runs on PostgreSQL only")
    return list(await driver.fetch(query, *arguments))


async def copy_event_records(
    session: AsyncSession, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """PostgreSQL only: COPY `records` (values of `columns`, JSON as text) into the
    outbox, in the session's transaction."""
    driver = await _driver(session)
    if driver is None:
        raise RuntimeError("copy_event_records runs on PostgreSQL only")
    if records:
        await driver.copy_records_to_table(
            OutboxEvent.__tablename__, columns=list(columns), records=records
        )


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows and not await _copy(session, OutboxEvent.__tablename__, rows):
        await session.execute(insert(OutboxEvent), list(rows))


_NO_DATA: ColumnElement[Any] = literal_column("NULL").label("data")
_NO_DATA_COLUMNS = (*_EVENT_COLUMNS[:7], _NO_DATA, *_EVENT_COLUMNS[8:])


async def events_after(
    session: AsyncSession,
    *,
    partitions: Collection[int],
    after_seq: int,
    limit: int,
    reads: Reads = Reads.DATA,
    tenants: Collection[uuid.UUID] | None = None,
) -> list[Event]:
    """Sequenced events of `partitions` after `after_seq`, in log order, read as `reads`
    says (`Reads.ROWS`: `data` left empty, not read nor decoded; `Reads.RAW`: the payload
    as text in `data_json`); only those of `tenants` when given."""
    driver = await _driver(session)
    if driver is not None:
        where = "partition = ANY($1::smallint[]) AND seq > $2"
        arguments: list[Any] = [list(partitions), after_seq, limit]
        if tenants is not None:
            where += " AND tenant_id = ANY($4::uuid[])"
            arguments.append(list(tenants))
        sql = _pg_events_query(reads, where, tail=" ORDER BY seq LIMIT $3")
        return [_pg_event(record, reads) for record in await driver.fetch(sql, *arguments)]
    raw = reads is Reads.RAW
    columns = _RAW_COLUMNS if raw else _EVENT_COLUMNS if reads is Reads.DATA else _NO_DATA_COLUMNS
    query = select(*columns).where(
        OutboxEvent.partition.in_(list(partitions)), OutboxEvent.seq > after_seq
    )
    if tenants is not None:
        query = query.where(await _ids_in(session, OutboxEvent.tenant_id, tenants))
    rows = await session.execute(query.order_by(OutboxEvent.seq).limit(limit))
    return [_event(row, raw=raw) for row in rows]


async def event_by_id(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, event_id: uuid.UUID
) -> Event | None:
    row = await session.get(OutboxEvent, event_id)
    if row is None or row.tenant_id != tenant_id or row.mode != mode or row.seq is None:
        return None
    return event_of(row)


async def events_by_id(
    session: AsyncSession, ids: Collection[uuid.UUID], *, raw: bool = False
) -> dict[uuid.UUID, Event]:
    """The events with these ids; with `raw`, payloads as stored text (`data_json`)."""
    driver = await _driver(session)
    if driver is not None:
        reads = Reads.RAW if raw else Reads.DATA
        sql = _pg_events_query(reads, "id = ANY($1::uuid[])")
        records = await driver.fetch(sql, list(ids))
        return {record[0]: _pg_event(record, reads) for record in records}
    matching = await _ids_in(session, OutboxEvent.id, ids)
    rows = await session.execute(select(*(_RAW_COLUMNS if raw else _EVENT_COLUMNS)).where(matching))
    return {row[0]: _event(row, raw=raw) for row in rows}


async def tenant_events(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: str,
    after_seq: int,
    limit: int,
    aggregate_id: uuid.UUID | None = None,
    types: Collection[str] = (),
) -> list[Event]:
    """The tenant's sequenced events after `after_seq`, oldest first."""
    query = select(*_EVENT_COLUMNS).where(
        OutboxEvent.tenant_id == tenant_id, OutboxEvent.mode == mode, OutboxEvent.seq > after_seq
    )
    if aggregate_id is not None:
        query = query.where(OutboxEvent.aggregate_id == aggregate_id)
    if types:
        query = query.where(OutboxEvent.type.in_(list(types)))
    rows = await session.execute(query.order_by(OutboxEvent.seq).limit(limit))
    return [_event(row) for row in rows]


# -- webhook endpoints


async def tenants_with_endpoints(session: AsyncSession) -> set[uuid.UUID]:
    """The tenants with at least one enabled webhook endpoint."""
    rows = await session.scalars(_TENANTS_WITH_ENDPOINTS)
    return set(rows)


async def endpoints_of_tenants(
    session: AsyncSession, tenant_ids: Collection[uuid.UUID]
) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant_id.in_(list(tenant_ids)), WebhookEndpoint.status == "enabled"
        )
    )
    return list(rows)


async def endpoint(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, endpoint_id: uuid.UUID
) -> WebhookEndpoint | None:
    row = await session.get(WebhookEndpoint, endpoint_id)
    if row is None or row.tenant_id != tenant_id or row.mode != mode:
        return None
    return row


async def endpoints_page(
    session: AsyncSession, *, tenant_id: uuid.UUID, mode: str, after: uuid.UUID | None, limit: int
) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.mode == mode
    )
    if after is not None:
        query = query.where(WebhookEndpoint.id > after)
    return list(await session.scalars(query.order_by(WebhookEndpoint.id).limit(limit)))


async def delete_endpoint(session: AsyncSession, endpoint_row: WebhookEndpoint) -> None:
    deliveries = select(WebhookDelivery.id).where(WebhookDelivery.endpoint_id == endpoint_row.id)
    await session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
    await session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_row.id)
    )
    await session.delete(endpoint_row)


# -- webhook deliveries


async def insert_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows and not await _copy(session, WebhookDelivery.__tablename__, rows):
        await session.execute(insert(WebhookDelivery), list(rows))


_PENDING: ColumnElement[str] = literal_column("'pending'")
_COMPLETED: tuple[ColumnElement[str], ...] = (
    literal_column("'succeeded'"),
    literal_column("'dead'"),
)
"""Delivery states as literals in the SQL, never bound parameters: the deliveries' due,
order and completed indexes are partial on them (migration 0028), and a planner uses a
partial index only where it can prove its predicate from the query, which it cannot from a
parameter (SQLite never; PostgreSQL not in a generic plan)."""


_PENDING_PAIRS = """
SELECT p.endpoint_id, p.aggregate_id
  FROM unnest($1::uuid[], $2::uuid[]) AS p(endpoint_id, aggregate_id)
 WHERE EXISTS (SELECT 1 FROM events_webhook_deliveries AS d
                WHERE d.endpoint_id = p.endpoint_id
                  AND d.aggregate_id = p.aggregate_id
                  AND d.status = 'pending')
"""


async def pending_pairs(
    session: AsyncSession, pairs: Collection[tuple[uuid.UUID, uuid.UUID]]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Those of the (endpoint, aggregate) `pairs` with a delivery still pending: one probe
    of the order index per pair (PostgreSQL: one statement, two array parameters)."""
    if not pairs:
        return set()
    driver = await _driver(session)
    if driver is not None:
        endpoints, aggregates = zip(*pairs, strict=True)
        records = await driver.fetch(_PENDING_PAIRS, list(endpoints), list(aggregates))
        return {(record[0], record[1]) for record in records}
    found = await session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.aggregate_id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.endpoint_id.in_({endpoint for endpoint, _ in pairs}),
            WebhookDelivery.aggregate_id.in_({aggregate for _, aggregate in pairs}),
        )
        .distinct()
    )
    return {(row[0], row[1]) for row in found} & set(pairs)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID


DUE_DELIVERIES_CLAIM = """
WITH due AS (
    SELECT d.id
      FROM events_webhook_deliveries AS d
     WHERE d.status = 'pending'
       AND d.next_attempt_at <= $1
       AND (d.leased_until IS NULL OR d.leased_until < $1)
       AND EXISTS (SELECT 1 FROM events_webhook_endpoints AS e
                    WHERE e.id = d.endpoint_id AND e.status = 'enabled'
                      AND (e.throttled_until IS NULL OR e.throttled_until <= $1))
       AND NOT EXISTS (SELECT 1 FROM events_webhook_deliveries AS earlier
                        WHERE earlier.endpoint_id = d.endpoint_id
                          AND earlier.aggregate_id = d.aggregate_id
                          AND earlier.status = 'pending'
                          AND earlier.event_seq < d.event_seq)
     ORDER BY d.status, d.next_attempt_at
     LIMIT $2
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE events_webhook_deliveries AS leased
   SET leased_until = $3
  FROM due
 WHERE leased.id = due.id
RETURNING leased.id, leased.endpoint_id, leased.event_id
"""
"""The claim and its lease in one statement: the rows the SELECT locks are the rows the
UPDATE leases, with one round trip and no ids sent back to the server."""


async def claim_due_deliveries(
    session: AsyncSession, *, now_ns: int, limit: int, lock: bool, leased_until: int
) -> list[DueDelivery]:
    """Lease pending deliveries that are due, unleased, to an enabled endpoint not paused
    (`throttled_until`), and first in line: none of the endpoint's earlier deliveries of
    the same aggregate is still pending. Oldest due first (ordered by the due index alone,
    so the scan stops at `limit`; the caller sorts by seq). On PostgreSQL with row locks,
    one statement through asyncpg (`DUE_DELIVERIES_CLAIM`); otherwise one SELECT and one
    UPDATE, however many."""
    driver = await _driver(session) if lock else None
    if driver is not None:
        records = await driver.fetch(DUE_DELIVERIES_CLAIM, now_ns, limit, leased_until)
        return [DueDelivery(record[0], record[1], record[2]) for record in records]
    earlier = aliased(WebhookDelivery)
    blocked = (
        select(earlier.id)
        .where(
            earlier.endpoint_id == WebhookDelivery.endpoint_id,
            earlier.aggregate_id == WebhookDelivery.aggregate_id,
            earlier.status == _PENDING,
            earlier.event_seq < WebhookDelivery.event_seq,
        )
        .exists()
    )
    enabled = (
        select(WebhookEndpoint.id)
        .where(
            WebhookEndpoint.id == WebhookDelivery.endpoint_id,
            WebhookEndpoint.status == "enabled",
            WebhookEndpoint.throttled_until.is_(None) | (WebhookEndpoint.throttled_until <= now_ns),
        )
        .exists()
    )
    query = (
        select(WebhookDelivery.id, WebhookDelivery.endpoint_id, WebhookDelivery.event_id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at <= now_ns,
            (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now_ns),
            enabled,
            ~blocked,
        )
        .order_by(WebhookDelivery.status, WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    due = [DueDelivery(row[0], row[1], row[2]) for row in await session.execute(query)]
    if due:
        await session.execute(
            update(WebhookDelivery)
            .where(await _ids_in(session, WebhookDelivery.id, [d.id for d in due]))
            .values(leased_until=leased_until)
            .execution_options(synchronize_session=False)
        )
    return due


async def postpone_deliveries(
    session: AsyncSession, ids: Collection[uuid.UUID], *, until_ns: int
) -> None:
    """Release the lease of these pending deliveries, unattempted, and make them due no
    sooner than `until_ns` (their endpoint was paused after they were leased)."""
    if not ids:
        return
    await session.execute(
        update(WebhookDelivery)
        .where(await _ids_in(session, WebhookDelivery.id, ids), WebhookDelivery.status == _PENDING)
        .values(leased_until=None, next_attempt_at=_no_sooner_than(until_ns))
        .execution_options(synchronize_session=False)
    )


async def postpone_pending(
    session: AsyncSession, endpoint_id: uuid.UUID, *, until_ns: int, now_ns: int
) -> None:
    """Make the endpoint's pending deliveries due no sooner than `until_ns` (it was paused),
    except those leased now: a sender has them in hand (through the order index)."""
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at < until_ns,
            WebhookDelivery.leased_until.is_(None) | (WebhookDelivery.leased_until < now_ns),
        )
        .values(next_attempt_at=until_ns)
        .execution_options(synchronize_session=False)
    )


def _no_sooner_than(until_ns: int) -> ColumnElement[int]:
    return case(
        (WebhookDelivery.next_attempt_at < until_ns, until_ns),
        else_=WebhookDelivery.next_attempt_at,
    )


async def has_due_delivery(session: AsyncSession, *, now_ns: int) -> bool:
    """Whether any pending delivery is due and unleased (a cheap look before a claim)."""
    found = await session.scalar(
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == _PENDING,
            WebhookDelivery.next_attempt_at <= now_ns,
            (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now_ns),
        )
        .limit(1)
    )
    return found is not None


_MARK_SUCCEEDED = """
UPDATE events_webhook_deliveries AS d
   SET status = 'succeeded', attempts = d.attempts + 1, last_status_code = s.status_code,
       leased_until = NULL, completed_at = s.completed_at
  FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS s(id, status_code, completed_at)
 WHERE d.id = s.id
RETURNING d.id
"""


@dataclass(frozen=True, slots=True)
class Success:
    """A delivery whose attempt a receiver answered with a 2xx, and when the answer came."""

    delivery_id: uuid.UUID
    status_code: int
    answered_at: int


async def mark_succeeded(session: AsyncSession, successes: Sequence[Success]) -> set[uuid.UUID]:
    """Record each delivery's successful attempt, completed when its receiver answered; the
    ids that exist (a deleted endpoint takes its deliveries with it). PostgreSQL: one
    statement, three array parameters; SQLite: one per (status, answer time), which is one
    per request."""
    if not successes:
        return set()
    driver = await _driver(session)
    if driver is not None:
        records = await driver.fetch(
            _MARK_SUCCEEDED,
            [success.delivery_id for success in successes],
            [success.status_code for success in successes],
            [success.answered_at for success in successes],
        )
        return {record[0] for record in records}
    grouped: dict[tuple[int, int], list[uuid.UUID]] = {}
    for success in successes:
        key = (success.status_code, success.answered_at)
        grouped.setdefault(key, []).append(success.delivery_id)
    existing: set[uuid.UUID] = set()
    for (status_code, answered_at), ids in grouped.items():
        rows = await session.execute(
            update(WebhookDelivery)
            .where(await _ids_in(session, WebhookDelivery.id, ids))
            .values(
                status="succeeded",
                attempts=WebhookDelivery.attempts + 1,
                last_status_code=status_code,
                leased_until=None,
                completed_at=answered_at,
            )
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        existing |= set(rows.scalars())
    return existing


async def endpoints_by_id(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, WebhookEndpoint]:
    rows = await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(list(ids))))
    return {row.id: row for row in rows}


async def deliveries_by_id(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, WebhookDelivery]:
    """The deliveries with these ids, locked; none asked, no statement (a sender's round
    that only succeeded records without reading any)."""
    if not ids:
        return {}
    rows = await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id.in_(list(ids))).with_for_update()
    )
    return {row.id: row for row in rows}


async def insert_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows and not await _copy(session, WebhookAttempt.__tablename__, rows):
        await session.execute(insert(WebhookAttempt), list(rows))


async def purge_completed_deliveries(
    session: AsyncSession, *, completed_before_ns: int, limit: int
) -> int:
    """Delete up to `limit` deliveries that succeeded or were dead-lettered before
    `completed_before_ns`, with their attempts; how many deliveries went. Found through
    the completed index (its predicate is this query's status condition), oldest first."""
    victims = list(
        await session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status.in_(_COMPLETED),
                WebhookDelivery.completed_at < completed_before_ns,
            )
            .order_by(WebhookDelivery.completed_at)
            .limit(limit)
        )
    )
    if victims:
        attempts = await _ids_in(session, WebhookAttempt.delivery_id, victims)
        await session.execute(delete(WebhookAttempt).where(attempts))
        deliveries = await _ids_in(session, WebhookDelivery.id, victims)
        await session.execute(delete(WebhookDelivery).where(deliveries))
    return len(victims)


async def deliveries_page(
    session: AsyncSession, *, endpoint_id: uuid.UUID, before: uuid.UUID | None, limit: int
) -> list[WebhookDelivery]:
    """The endpoint's deliveries by id, descending: first deliveries in reverse log order
    (their ids lead with the event's `seq`), replays (UUIDv7) above them."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(await session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


async def attempts_of(
    session: AsyncSession, delivery_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
        .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
    )
    found: dict[uuid.UUID, list[WebhookAttempt]] = {}
    for row in rows:
        found.setdefault(row.delivery_id, []).append(row)
    return found


# -- inbound


async def inbound_by_external_id(
    session: AsyncSession, *, source: str, external_id: str
) -> InboundEvent | None:
    found: InboundEvent | None = await session.scalar(
        select(InboundEvent).where(
            and_(InboundEvent.source == source, InboundEvent.external_id == external_id)
        )
    )
    return found


@dataclass(frozen=True, slots=True)
class Look:
    """What a worker's loops would find, seen in one statement (`look`)."""

    sequencer_position: int
    """The last ledger timestamp the sequencer copied."""
    unsequenced: bool
    """Whether a committed row waits for its `seq`."""
    behind: frozenset[str]
    """The channels (of those asked about) with a cursor before the end of the log."""
    inbound_due: bool
    """Whether an inbound notification is due."""


@functools.lru_cache(maxsize=16)
def _look_statement(channels: tuple[str, ...]) -> DriverStatement:
    """`look`'s statement for `channels`, built and compiled once (its time is the `now_ns`
    parameter): building it anew cost more of the worker's CPU than PostgreSQL spent
    answering it."""
    last = select(func.coalesce(func.max(OutboxEvent.seq), 0)).scalar_subquery()
    lowest = [
        select(func.min(EventCursor.position)).where(EventCursor.channel == c).scalar_subquery()
        for c in channels
    ]
    position = (
        select(EventCursor.position)
        .where(EventCursor.channel == SEQUENCER, EventCursor.partition == 0)
        .scalar_subquery()
    )
    unsequenced = select(OutboxEvent.id).where(OutboxEvent.seq.is_(None)).exists()
    due = (
        select(InboundEvent.id)
        .where(
            InboundEvent.status == "received",
            InboundEvent.next_attempt_at <= bindparam("now_ns", type_=BigInteger()),
        )
        .exists()
    )
    return DriverStatement(select(last, position, unsequenced, due, *lowest))


async def look(unit_of_work: UnitOfWork, *, channels: Sequence[str], now_ns: int) -> Look:
    """Whether the sequencer, each of `channels` and the inbound processor have work, in
    one statement run alone (`UnitOfWork.fetch_alone`): what an idle worker asks every
    poll interval, where each loop used to ask its own question in its own transaction
    (about a millisecond of CPU each)."""
    [row] = await unit_of_work.fetch_alone(_look_statement(tuple(channels)), {"now_ns": now_ns})
    end = int(row[0])
    return Look(
        sequencer_position=int(row[1] or 0),
        unsequenced=bool(row[2]),
        behind=frozenset(
            channel
            for channel, low in zip(channels, row[4:], strict=True)
            if low is not None and int(low) < end
        ),
        inbound_due=bool(row[3]),
    )


async def has_due_inbound(session: AsyncSession, *, now_ns: int) -> bool:
    found = await session.scalar(
        select(InboundEvent.id)
        .where(InboundEvent.status == "received", InboundEvent.next_attempt_at <= now_ns)
        .limit(1)
    )
    return found is not None


async def claim_due_inbound(
    session: AsyncSession, *, now_ns: int, limit: int, lock: bool
) -> list[InboundEvent]:
    query = (
        select(InboundEvent)
        .where(InboundEvent.status == "received", InboundEvent.next_attempt_at <= now_ns)
        .order_by(InboundEvent.next_attempt_at, InboundEvent.id)
        .limit(limit)
    )
    if lock:
        query = query.with_for_update(skip_locked=True)
    return list(await session.scalars(query))
