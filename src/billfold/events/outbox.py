"""The transactional outbox: how any domain records an event.

    from billfold.events.outbox import emit

    async with unit_of_work.begin() as session:
        payment = ...                      # the state change
        emit(session, tenant_id=principal.tenant_id, mode=principal.mode,
             type="com.billfold.payment.captured.v1", subject=format_id("pay", payment.id),
             aggregate_id=payment.id, data={...})

The row is added to the caller's session and commits (or rolls back) with the change: an
event exists if and only if its change does. `emit` never flushes or commits. The worker's
sequencer numbers committed rows; events of one aggregate keep the order their transactions
committed in, which holds when the domain serializes changes to one aggregate (it locks the
row it changes).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.events.models import OutboxEvent
from billfold.events.types import EVENT_TYPE_PATTERN, TYPE_LENGTH_MAX, partition_of
from billfold.kit.auth import Mode
from billfold.kit.errors import invariant
from billfold.kit.ids import new_id

__all__ = ["SUBJECT_LENGTH_MAX", "emit"]

SUBJECT_LENGTH_MAX = 128
_TYPE = re.compile(EVENT_TYPE_PATTERN)


def emit(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    mode: Mode,
    type: str,
    subject: str,
    aggregate_id: uuid.UUID,
    data: Mapping[str, Any],
    event_id: uuid.UUID | None = None,
    occurred_at_ns: int | None = None,
) -> uuid.UUID:
    """Add an event to `session` (the caller's transaction) and return its id.

    `type` is versioned (`com.billfold.<object>.<what>.v<N>`); `subject` is the public id of
    the object (`pay_…`); `aggregate_id` groups events that must stay in order; `data` is
    JSON-serializable and documented per type. Pass `event_id` to make a retried change
    emit the same event id."""
    invariant(
        len(type) <= TYPE_LENGTH_MAX and _TYPE.match(type) is not None, "a versioned event type"
    )
    invariant(0 < len(subject) <= SUBJECT_LENGTH_MAX, "a subject is a public id")
    identifier = event_id or new_id()
    session.add(
        OutboxEvent(
            id=identifier,
            tenant_id=tenant_id,
            mode=Mode(mode).value,
            type=type,
            subject=subject,
            aggregate_id=aggregate_id,
            partition=partition_of(aggregate_id),
            data=dict(data),
            occurred_at=time.time_ns() if occurred_at_ns is None else occurred_at_ns,
            seq=None,
        )
    )
    return identifier
