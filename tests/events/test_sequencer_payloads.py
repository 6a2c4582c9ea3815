"""The sequencer's copies of the ledger's transfers. On PostgreSQL it reads them with their
payloads written by PostgreSQL (`TRANSFER_EVENT_SOURCES_PG`); on SQLite it builds them in
Python (`transfer_event_row`). Either way each outbox row must be exactly what
`transfer_event_row` makes of the transfer, and on PostgreSQL the stored payload text must be
`compact_json` of it, byte for byte (channels splice that text into their envelopes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from billfold.events.ledger_events import (
    EVENT_RECORD_COLUMNS,
    TenantMode,
    transfer_data,
    transfer_event_records,
    transfer_event_row,
)
from billfold.events.models import OutboxEvent
from billfold.events.types import compact_json
from billfold.kit.auth import Mode
from billfold.ledger.types import AMOUNT_MAX, Transfer, TransferFlags
from events.events_support import harness, open_accounts, transfer

pytestmark = pytest.mark.anyio

USER_DATA = [
    None,
    "",
    "order 42",
    'quote " backslash \\ slash /',
    "lines\nand\ttabs\r\x08\x0c",
    "control \x01\x1f and DEL \x7f",
    "naïve café ✓ 漢字 🙂 \u2028\u2029",
    "x" * 128,
]


async def _transfers(h: Any) -> list[uuid.UUID]:
    a, b = await open_accounts(h)
    ids = [await transfer(h, a, b, user_data=data) for data in USER_DATA]
    c, d = await open_accounts(h)  # the largest amount, on accounts of its own
    ids.append(await transfer(h, c, d, amount=AMOUNT_MAX))
    pending = await transfer(h, a, b, flags=TransferFlags.PENDING, timeout_s=3600)
    ids += [pending, await transfer(h, a, b, flags=TransferFlags.POST_PENDING, pending_id=pending)]
    to_void = await transfer(h, a, b, flags=TransferFlags.PENDING, user_data="void me")
    ids += [to_void, await transfer(h, a, b, flags=TransferFlags.VOID_PENDING, pending_id=to_void)]
    return ids


async def test_the_outbox_holds_each_transfer_as_transfer_event_row_makes_it(
    isolated_database_url: str,
) -> None:
    async with harness(isolated_database_url) as h:
        ids = await _transfers(h)
        while await h.worker.sequence():
            pass
        transfers = {t.id: t for t in await h.ledger.transfers_after(after_timestamp=0, limit=100)}
        async with h.unit_of_work.begin() as session:
            rows = (
                await session.scalars(
                    select(OutboxEvent).where(OutboxEvent.type.like("com.billfold.transfer.%"))
                )
            ).all()
            stored = await session.execute(text("SELECT id, CAST(data AS TEXT) FROM events_outbox"))
            stored_text: dict[uuid.UUID, str] = dict(stored.all())
        by_transfer = {row.subject: row for row in rows}
        assert len(rows) == len(ids) == len(by_transfer)
        seqs = [by_transfer[f"txf_{i.hex}"].seq for i in ids]
        assert seqs == sorted(seqs)  # copied in the ledger's order
        # Event ids lead with the transfer's millisecond, so the key grows with the log.
        in_log_order = sorted(rows, key=lambda row: row.seq or 0)
        leading = [row.id.int >> 80 for row in in_log_order]
        assert leading == sorted(leading)
        assert all(row.id.version == 8 for row in rows)
        for transfer_id in ids:
            stamp = transfers[transfer_id].timestamp
            assert by_transfer[f"txf_{transfer_id.hex}"].id.int >> 80 == stamp // 10**6
        for transfer_id in ids:
            row = by_transfer[f"txf_{transfer_id.hex}"]
            assert row.seq is not None
            expected = transfer_event_row(
                transfers[transfer_id], tenant_id=h.tenant_id, mode=Mode.TEST, seq=row.seq
            )
            assert {name: getattr(row, name) for name in expected} == expected
            if h.worker._row_locks:  # PostgreSQL keeps the text it was given
                assert stored_text[row.id] == compact_json(transfer_data(transfers[transfer_id]))


def test_the_records_follow_the_rows_columns_and_skip_unowned_tenants() -> None:
    owner = TenantMode(uuid.uuid4(), Mode.LIVE)
    known, unknown = uuid.uuid4(), uuid.uuid4()
    first, second, pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    post = int(TransferFlags.POST_PENDING)
    sources = [
        (first, known, None, 0, 11, '{"a":1}'),
        (uuid.uuid4(), unknown, None, 0, 12, "{}"),
        (second, known, pending, post, 13, '{"b":2}'),
    ]
    records = transfer_event_records(sources, {known: owner}, last_seq=41)
    assert [r[-1] for r in records] == [42, 43]
    for record, (transfer_id, aggregate, flags, stamp, payload) in zip(
        records,
        [(first, first, 0, 11, '{"a":1}'), (second, pending, post, 13, '{"b":2}')],
        strict=True,
    ):
        row = transfer_event_row(
            Transfer(
                id=transfer_id,
                debit_account_id=uuid.uuid4(),
                credit_account_id=uuid.uuid4(),
                ledger="USD",
                code=1,
                user_data=None,
                tenant_id=known,
                amount=0,
                flags=TransferFlags(flags),
                pending_id=None if aggregate == transfer_id else aggregate,
                timeout_s=0,
                timestamp=stamp,
                expires_at=None,
            ),
            tenant_id=owner.tenant_id,
            mode=owner.mode,
            seq=record[-1],
        )
        expected = {**row, "data": payload}
        assert dict(zip(EVENT_RECORD_COLUMNS, record, strict=True)) == expected


# -- PostgreSQL's escaping of text in JSON, against Python's


@pytest.fixture(scope="module")
def postgres(shared_postgres_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    loop = asyncio.new_event_loop()
    dsn = shared_postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = loop.run_until_complete(asyncpg.connect(dsn))
    try:
        yield loop, connection
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))))
def test_postgres_escapes_text_in_json_as_python_does(
    postgres: tuple[asyncio.AbstractEventLoop, Any], texts: list[str]
) -> None:
    loop, connection = postgres
    escaped = loop.run_until_complete(
        connection.fetchval(
            "SELECT array_agg(to_json(t)::text ORDER BY i)"
            " FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)",
            texts,
        )
    )
    assert list(escaped or []) == [compact_json(t) for t in texts]
