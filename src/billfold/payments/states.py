"""Every payment kind's state machine. Pure: which transitions exist, nothing else."""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["TERMINAL", "TRANSITIONS", "Kind", "State", "can_transition"]


class Kind(enum.StrEnum):
    TOP_UP = "top_up"
    WITHDRAWAL = "withdrawal"
    P2P = "p2p"
    MERCHANT = "merchant"


class State(enum.StrEnum):
    CREATED = "created"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_PAYMENT = "requires_payment"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    EXPIRED = "expired"
    IN_REVIEW = "in_review"
    """Held by a risk decision of ``review`` until an analyst approves or rejects it (or
    the hold expires): money held as pending transfers, or (top-ups) nothing moved yet."""


S = State
TRANSITIONS: Mapping[Kind, Mapping[State, frozenset[State]]] = {
    Kind.TOP_UP: {
        S.CREATED: frozenset({S.PROCESSING, S.REQUIRES_ACTION, S.SUCCEEDED, S.FAILED, S.IN_REVIEW}),
        S.IN_REVIEW: frozenset({S.PROCESSING, S.REQUIRES_ACTION, S.SUCCEEDED, S.FAILED}),
        S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.SUCCEEDED, S.FAILED}),
        S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED}),
    },
    Kind.WITHDRAWAL: {
        S.CREATED: frozenset({S.PROCESSING, S.FAILED, S.IN_REVIEW}),
        S.IN_REVIEW: frozenset({S.PROCESSING, S.FAILED}),
        S.PROCESSING: frozenset({S.SUCCEEDED, S.FAILED}),
    },
    Kind.P2P: {
        S.CREATED: frozenset({S.SUCCEEDED, S.FAILED, S.IN_REVIEW}),
        S.IN_REVIEW: frozenset({S.SUCCEEDED, S.FAILED}),
    },
    Kind.MERCHANT: {
        S.REQUIRES_PAYMENT: frozenset({S.AUTHORIZED, S.EXPIRED, S.IN_REVIEW}),
        S.IN_REVIEW: frozenset({S.AUTHORIZED, S.FAILED}),
        S.AUTHORIZED: frozenset({S.CAPTURED, S.VOIDED, S.EXPIRED}),
        S.CAPTURED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
        S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    },
}
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.VOIDED, S.EXPIRED, S.REFUNDED})


def can_transition(kind: Kind, from_state: State, to_state: State) -> bool:
    return to_state in TRANSITIONS[kind].get(from_state, frozenset())
