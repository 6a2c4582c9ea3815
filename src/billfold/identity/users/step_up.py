"""Step-up authentication for one action, following PSD2 strong customer authentication
with dynamic linking (RTS on SCA, article 5).

1. ``begin_step_up`` records the action's amount, currency and payee with a challenge.
2. The user answers with a TOTP code or with a device signature over a message that names
   the amount and the payee (``signatures.step_up_message``); ``answer_step_up`` returns a
   one-time ``bfu_su_…`` token bound to exactly (user, amount, currency, payee).
3. The domain moving the money calls :func:`verify_step_up` with the values it is about to
   use. Any difference, an expired or a spent token is refused; a difference also burns
   the token, so a token shown with a tampered amount or payee is never good again.

A wrong answer also counts towards the account lock of ``lockout``, and a locked account
answers no step-up (RTS article 4(3)(b): at most five failed attempts in a row, then the
action is blocked for a while): opening new challenges does not buy more guesses. Each
answer is counted before it is checked (:func:`reserve_step_up_attempt`, committed first),
so concurrent answers cannot outrun the lock either.

Service functions take keyword arguments, flush and never commit. ``StepUpRejected``
carries an aftermath (the failure's record, the burn); a caller running ``verify_step_up``
in its own unit of work passes the error to ``work.record_aftermath`` after its rollback.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import SecurityEventType
from billfold.identity.users.errors import (
    Aftermath,
    DeviceNotFound,
    FactorStateConflict,
    StepUpNotFound,
    StepUpRejected,
    UserLimitReached,
    UserNotAuthenticated,
    with_aftermath,
)
from billfold.identity.users.events import record_user_event
from billfold.identity.users.lockout import (
    is_locked,
    refund_attempt,
    reserve_attempt,
    settle_failure,
)
from billfold.identity.users.mfa import verify_totp
from billfold.identity.users.models import PAYEE_LENGTH_MAX, StepUp
from billfold.identity.users.repository import (
    DeviceRepository,
    FactorRepository,
    StepUpRepository,
    UserRepository,
)
from billfold.identity.users.signatures import (
    DeviceAlgorithm,
    decode_signature,
    signature_verifies,
    step_up_message,
)
from billfold.identity.users.tokens import (
    TokenKind,
    hash_token,
    mint_token,
    token_hash_if_well_formed,
)
from billfold.identity.users.types import STEP_UP_ID_PREFIX, UserPrincipal
from billfold.keys.keyring import Keyring
from billfold.kit.clock import NANOSECONDS_PER_SECOND
from billfold.kit.errors import ValidationFailed
from billfold.kit.ids import format_id, new_id
from billfold.kit.money import AMOUNT_MAX, is_asset_code

__all__ = [
    "STEP_UPS_OPEN_PER_USER_MAX",
    "STEP_UP_ATTEMPTS_MAX",
    "STEP_UP_CHALLENGE_LIFETIME_NS",
    "STEP_UP_TOKEN_LIFETIME_NS",
    "IssuedStepUpToken",
    "StepUpMethod",
    "answer_step_up",
    "begin_step_up",
    "message_of",
    "reserve_step_up_attempt",
    "verify_step_up",
]

STEP_UP_CHALLENGE_LIFETIME_NS = 5 * 60 * NANOSECONDS_PER_SECOND
"""PSD2 RTS article 4(3)(d): at most five minutes to authenticate."""
STEP_UP_TOKEN_LIFETIME_NS = 2 * 60 * NANOSECONDS_PER_SECOND
"""The answered token is spent right away by the client's next request."""
STEP_UP_ATTEMPTS_MAX = 3
"""Wrong answers a challenge allows; then it is dead and the user starts again."""
STEP_UPS_OPEN_PER_USER_MAX = 10
"""Step-ups a user may have answerable or unspent at once."""
_CHALLENGE_BYTES = 24

StepUpMethod = Literal["totp", "device"]


@dataclass(frozen=True, slots=True)
class IssuedStepUpToken:
    """The one-time token; it exists only here and is never stored."""

    token: str
    expires_at: int


def _check_action(*, amount: int, currency: str, payee: str) -> None:
    if type(amount) is not int or not 1 <= amount <= AMOUNT_MAX:
        raise ValidationFailed("amount is an integer of minor units from 1 to 2**127 - 1.")
    if not is_asset_code(currency):
        raise ValidationFailed("currency is an asset code: 2 to 12 of A-Z and 0-9.")
    if not 1 <= len(payee) <= PAYEE_LENGTH_MAX or not payee.isprintable() or payee != payee.strip():
        raise ValidationFailed(
            f"payee has 1 to {PAYEE_LENGTH_MAX} printable characters, no outer spaces."
        )


def message_of(step_up: StepUp) -> bytes:
    """What a device signs to answer ``step_up``."""
    return step_up_message(
        step_up_id=format_id(STEP_UP_ID_PREFIX, step_up.id),
        challenge=step_up.challenge,
        amount=int(step_up.amount),
        currency=step_up.currency,
        payee=step_up.payee,
    )


async def _check_method(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    method: StepUpMethod,
    device_id: uuid.UUID | None,
) -> None:
    if method == "totp":
        factor = await FactorRepository(session).get_totp(user_id)
        if factor is None or factor.confirmed_at is None or device_id is not None:
            raise FactorStateConflict("Step-up by TOTP needs a confirmed TOTP app (no device).")
        return
    device = None
    if device_id is not None:
        device = await DeviceRepository(session).get_for_user(user_id=user_id, device_id=device_id)
    if device is None or device.revoked_at is not None:
        raise DeviceNotFound("Step-up by device needs one of the user's active devices.")


async def begin_step_up(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    amount: int,
    currency: str,
    payee: str,
    method: StepUpMethod,
    device_id: uuid.UUID | None,
    now_ns: int,
) -> StepUp:
    """A challenge for the action; the device to sign with, for method ``device``."""
    _check_action(amount=amount, currency=currency, payee=payee)
    await _check_method(session, user_id=principal.user_id, method=method, device_id=device_id)
    step_ups = StepUpRepository(session)
    await step_ups.delete_dead(user_id=principal.user_id, now_ns=now_ns)
    if (
        await step_ups.count_open(user_id=principal.user_id, now_ns=now_ns)
        >= STEP_UPS_OPEN_PER_USER_MAX
    ):
        raise UserLimitReached(
            f"A user has at most {STEP_UPS_OPEN_PER_USER_MAX} open step-ups.",
            limit=STEP_UPS_OPEN_PER_USER_MAX,
        )
    step_up = StepUp(
        id=new_id(),
        user_id=principal.user_id,
        amount=str(amount),
        currency=currency,
        payee=payee,
        method=method,
        device_id=device_id,
        challenge=secrets.token_urlsafe(_CHALLENGE_BYTES),
        created_at=now_ns,
        expires_at=now_ns + STEP_UP_CHALLENGE_LIFETIME_NS,
        failed_attempts=0,
        answered_at=None,
        token_hash=None,
        token_expires_at=None,
        used_at=None,
    )
    await step_ups.add(step_up)
    await _record(
        session,
        _Facts.of(step_up, tenant_id=principal.tenant_id),
        event_type=SecurityEventType.STEP_UP_ISSUED,
        now_ns=now_ns,
        stage="issued",
    )
    return step_up


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a step-up's security events say, copied out of the row: an aftermath runs in
    another session, after the row's own session rolled back."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    step_up_id: uuid.UUID | None
    method: str | None
    amount: str | None
    currency: str | None

    @classmethod
    def of(cls, step_up: StepUp, *, tenant_id: uuid.UUID) -> _Facts:
        return cls(
            tenant_id=tenant_id,
            user_id=step_up.user_id,
            step_up_id=step_up.id,
            method=step_up.method,
            amount=step_up.amount,
            currency=step_up.currency,
        )


async def _record(
    session: AsyncSession,
    facts: _Facts,
    *,
    event_type: SecurityEventType,
    now_ns: int,
    stage: str,
    reason: str | None = None,
) -> None:
    step_up_id = (
        None if facts.step_up_id is None else format_id(STEP_UP_ID_PREFIX, facts.step_up_id)
    )
    await record_user_event(
        session,
        tenant_id=facts.tenant_id,
        user_id=facts.user_id,
        event_type=event_type,
        now_ns=now_ns,
        actor_unproven=event_type is SecurityEventType.STEP_UP_FAILED,
        detail={
            "step_up_id": step_up_id,
            "method": facts.method,
            "amount": facts.amount,
            "currency": facts.currency,
            "stage": stage,
            "reason": reason,
        },
    )


def _failure(
    facts: _Facts, *, stage: str, reason: str, now_ns: int, count: bool = False, burn: bool = False
) -> Aftermath:
    """``count``: a wrong answer, counted against the challenge; the account lock counted
    it already (:func:`reserve_step_up_attempt`) and locks now if that was the last."""

    async def record(session: AsyncSession) -> None:
        step_ups = StepUpRepository(session)
        if facts.step_up_id is not None and count:
            await step_ups.count_failure(facts.step_up_id)
            await settle_failure(session, user_id=facts.user_id, now_ns=now_ns)
        if facts.step_up_id is not None and burn:
            await step_ups.spend(step_up_id=facts.step_up_id, now_ns=now_ns)
        await _record(
            session,
            facts,
            event_type=SecurityEventType.STEP_UP_FAILED,
            now_ns=now_ns,
            stage=stage,
            reason=reason,
        )

    return record


async def _answer_verifies(
    session: AsyncSession,
    *,
    step_up: StepUp,
    tenant_id: uuid.UUID,
    totp_code: str | None,
    signature: str | None,
    keyring: Keyring,
    now_ns: int,
) -> bool:
    if step_up.method == "totp":
        return totp_code is not None and await verify_totp(
            session,
            user_id=step_up.user_id,
            tenant_id=tenant_id,
            code=totp_code,
            keyring=keyring,
            now_ns=now_ns,
        )
    decoded = None if signature is None else decode_signature(signature)
    device = None
    if step_up.device_id is not None:
        device = await DeviceRepository(session).get_for_user(
            user_id=step_up.user_id, device_id=step_up.device_id
        )
    return (
        decoded is not None
        and device is not None
        and device.revoked_at is None
        and signature_verifies(
            algorithm=DeviceAlgorithm(device.algorithm),
            public_key_der=device.public_key,
            message=message_of(step_up),
            signature=decoded,
        )
    )


async def _answerable(
    session: AsyncSession, *, principal: UserPrincipal, step_up_id: uuid.UUID, now_ns: int
) -> tuple[StepUp, _Facts]:
    step_up = await StepUpRepository(session).get_for_user(
        user_id=principal.user_id, step_up_id=step_up_id
    )
    if step_up is None:
        raise StepUpNotFound()
    facts = _Facts.of(step_up, tenant_id=principal.tenant_id)
    if (
        step_up.answered_at is not None
        or step_up.expires_at <= now_ns
        or step_up.failed_attempts >= STEP_UP_ATTEMPTS_MAX
    ):
        aftermath = _failure(facts, stage="answer", reason="not_answerable", now_ns=now_ns)
        raise with_aftermath(
            StepUpRejected("The step-up was answered, expired or spent its attempts."), aftermath
        )
    return step_up, facts


def _locked(facts: _Facts, *, now_ns: int) -> StepUpRejected:
    aftermath = _failure(facts, stage="answer", reason="locked", now_ns=now_ns)
    return with_aftermath(
        StepUpRejected("The account is temporarily locked after too many failed attempts."),
        aftermath,
    )


async def reserve_step_up_attempt(
    session: AsyncSession, *, principal: UserPrincipal, step_up_id: uuid.UUID, now_ns: int
) -> None:
    """Count an answer against the account lock before it is checked; commit this before
    :func:`answer_step_up` (``work.run_attempt``)."""
    _step_up, facts = await _answerable(
        session, principal=principal, step_up_id=step_up_id, now_ns=now_ns
    )
    if not await reserve_attempt(session, user_id=principal.user_id, now_ns=now_ns):
        raise _locked(facts, now_ns=now_ns)


async def answer_step_up(
    session: AsyncSession,
    *,
    principal: UserPrincipal,
    step_up_id: uuid.UUID,
    totp_code: str | None,
    signature: str | None,
    keyring: Keyring,
    now_ns: int,
) -> IssuedStepUpToken:
    """The one-time token for a correct answer, or :class:`StepUpRejected`. The answer
    was counted by :func:`reserve_step_up_attempt`, committed before this runs; a correct
    one takes the count back."""
    step_up, facts = await _answerable(
        session, principal=principal, step_up_id=step_up_id, now_ns=now_ns
    )
    # The user's row is locked first, as every write to the account does (sign-in, an
    # erasure, a password asked again), and read as committed now: an erasure or a
    # disabling since the access token was checked refuses the answer.
    user = await UserRepository(session).lock_signable(principal.user_id)
    if user is None:
        raise UserNotAuthenticated()
    if is_locked(user, now_ns=now_ns):
        raise _locked(facts, now_ns=now_ns)
    if not await _answer_verifies(
        session,
        step_up=step_up,
        tenant_id=principal.tenant_id,
        totp_code=totp_code,
        signature=signature,
        keyring=keyring,
        now_ns=now_ns,
    ):
        aftermath = _failure(
            facts, stage="answer", reason="wrong_answer", now_ns=now_ns, count=True
        )
        raise with_aftermath(StepUpRejected("The answer does not verify."), aftermath)
    token = mint_token(TokenKind.STEP_UP)
    expires_at = now_ns + STEP_UP_TOKEN_LIFETIME_NS
    if not await StepUpRepository(session).answer(
        step_up_id=step_up.id,
        token_hash=hash_token(token),
        token_expires_at=expires_at,
        now_ns=now_ns,
    ):
        raise StepUpRejected("The step-up was answered already.")
    await refund_attempt(session, user_id=principal.user_id)
    await _record(
        session, facts, event_type=SecurityEventType.STEP_UP_VERIFIED, now_ns=now_ns, stage="answer"
    )
    return IssuedStepUpToken(token=token, expires_at=expires_at)


async def verify_step_up(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    token: str,
    amount: int,
    currency: str,
    payee: str,
    now_ns: int | None = None,
) -> None:
    """Spend ``token`` for exactly this action of this user, or raise :class:`StepUpRejected`.

    For other domains, inside the unit of work that performs the action: the token is spent
    only if that unit of work commits.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise StepUpRejected("The step-up token is not valid for this user.")
    token_hash = token_hash_if_well_formed(token, kind=TokenKind.STEP_UP)
    step_ups = StepUpRepository(session)
    step_up = None if token_hash is None else await step_ups.find_by_token(token_hash)
    if step_up is None or step_up.user_id != user_id:
        facts = _Facts(user.tenant_id, user.id, None, None, None, None)
        aftermath = _failure(facts, stage="verify", reason="unknown_token", now_ns=now_ns)
        raise with_aftermath(
            StepUpRejected("The step-up token is not valid for this user."), aftermath
        )
    facts = _Facts.of(step_up, tenant_id=user.tenant_id)
    reason = _refusal(step_up, amount=amount, currency=currency, payee=payee, now_ns=now_ns)
    if reason is None and not await step_ups.spend(step_up_id=step_up.id, now_ns=now_ns):
        reason = "spent"  # a concurrent verification spent it first
    if reason is not None:
        # A mismatch burns the token: whoever changed the amount or payee holds it.
        aftermath = _failure(
            facts, stage="verify", reason=reason, now_ns=now_ns, burn=reason == "mismatch"
        )
        raise with_aftermath(
            StepUpRejected(f"The step-up token is {_REFUSALS[reason]}."), aftermath
        )
    await _record(
        session, facts, event_type=SecurityEventType.STEP_UP_VERIFIED, now_ns=now_ns, stage="verify"
    )


_REFUSALS = {
    "spent": "already spent",
    "expired": "expired",
    "mismatch": "bound to another amount, currency or payee",
}


def _refusal(step_up: StepUp, *, amount: int, currency: str, payee: str, now_ns: int) -> str | None:
    if step_up.used_at is not None:
        return "spent"
    if step_up.token_expires_at is None or step_up.token_expires_at <= now_ns:
        return "expired"
    bound = (step_up.amount, step_up.currency, step_up.payee)
    if type(amount) is not int or (str(amount), currency, payee) != bound:
        return "mismatch"
    return None
