"""Payments over HTTP. Merchants and the platform use API keys (`payments:write`,
`payments:read`); wallet holders use their access tokens under `/v1/me`; providers post
signed notifications to `/v1/connectors/{provider}/notifications` (public: the HMAC
signature is the credential)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from billfold.connectors.types import NotificationType
from billfold.identity.users.auth import authenticate_user, device_signed
from billfold.identity.users.signatures import DEVICE_ID_HEADER
from billfold.identity.users.types import DEVICE_ID_PREFIX, UserPrincipal
from billfold.kit.auth import Principal, require_scopes
from billfold.kit.errors import InvariantViolation
from billfold.kit.ids import format_id, parse_id
from billfold.payments.errors import DisputeNotFound, MoneyRequestNotFound, PaymentNotFound
from billfold.payments.explain import (
    dispute_response,
    explain,
    money_request_response,
)
from billfold.payments.flows import merchant, p2p, refunds, topups, withdrawals
from billfold.payments.flows.common import load, now_ns, require_visible
from billfold.payments.flows.disputes import add_evidence, open_dispute, resolve_dispute
from billfold.payments.flows.notifications import receive_notification
from billfold.payments.flows.splits import create_split_rule
from billfold.payments.models import Dispute
from billfold.payments.repository import PaymentRepository
from billfold.payments.runtime import PaymentsRuntime
from billfold.payments.schemas import (
    ApproveMoneyRequest,
    AuthorizeRequest,
    CaptureRequest,
    DisputeOpenRequest,
    DisputeResolveRequest,
    DisputeResponse,
    EvidenceRequest,
    MerchantPaymentCreate,
    MoneyRequestCreate,
    MoneyRequestResponse,
    NotificationReceipt,
    P2PCreate,
    PaymentResponse,
    RefundCreate,
    SplitRuleCreate,
    SplitRuleResponse,
    TopUpCreate,
    WithdrawalCreate,
)
from billfold.risk.gate import RiskContext, request_context

__all__ = ["NOTIFICATIONS_PATH", "get_runtime", "router"]

NOTIFICATIONS_ROUTE = "/connectors/{provider}/notifications"
NOTIFICATIONS_PATH = f"/v1{NOTIFICATIONS_ROUTE}"
router = APIRouter(prefix="/v1", tags=["payments"])
Reader = Annotated[Principal, Depends(require_scopes("payments:read"))]
Writer = Annotated[Principal, Depends(require_scopes("payments:write"))]
EndUser = Annotated[UserPrincipal, Depends(authenticate_user)]


def get_runtime(request: Request) -> PaymentsRuntime:
    runtime = getattr(request.app.state, "payments", None)
    if not isinstance(runtime, PaymentsRuntime):
        raise InvariantViolation("the app lifespan sets up app.state.payments")
    return runtime


Runtime = Annotated[PaymentsRuntime, Depends(get_runtime)]


async def signing_device(request: Request, user: EndUser) -> uuid.UUID | None:
    """The bound device that signed the request, when it carries a device signature
    (which must then verify: a request claiming a device proves it)."""
    if DEVICE_ID_HEADER not in request.headers:
        return None
    verified = await device_signed(request, user)
    return parse_id(DEVICE_ID_PREFIX, verified.device_id)


SigningDevice = Annotated[uuid.UUID | None, Depends(signing_device)]
HELD = "Held for risk review: the payment (or refund) is `in_review`."
RISK_ANSWERS: dict[int | str, dict[str, object]] = {
    202: {"description": HELD},
    403: {
        "description": "`risk_blocked` (with `decision_id`), or `step_up_required` (with"
        " `amount`, `currency`, `payee` and, for a risk challenge, `decision_id`).",
    },
}

RECIPIENT_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"description": "`recipient_not_found`: no user of the tenant goes by that name."}
}


def _user_context(
    request: Request, device_id: uuid.UUID | None, step_up_token: str | None = None
) -> RiskContext:
    return request_context(request, device_id=device_id, step_up_token=step_up_token)


def _held(response: Response, body: PaymentResponse) -> PaymentResponse:
    """202 for a payment held for review."""
    if body.state == "in_review":
        response.status_code = 202
    return body


async def _explained(runtime: PaymentsRuntime, payment_id: uuid.UUID) -> PaymentResponse:
    async with runtime.unit_of_work.begin() as session:
        payment = await load(session, payment_id)
    return await explain(runtime, payment)


async def _scoped(
    runtime: PaymentsRuntime, payment_id: str, *, tenant_id: uuid.UUID, mode: str
) -> uuid.UUID:
    wanted = parse_id("pay", payment_id)
    async with runtime.unit_of_work.begin() as session:
        await load(session, wanted, tenant_id=tenant_id, mode=mode)
    return wanted


# -- merchants and the platform (API keys)


@router.post(
    "/payments",
    status_code=201,
    summary="Create a merchant payment.",
    responses={404: {"description": "`merchant_not_found`: no such merchant of yours."}},
)
async def create_payment(
    body: MerchantPaymentCreate, caller: Writer, runtime: Runtime
) -> PaymentResponse:
    payment_id = await merchant.create_merchant_payment(
        runtime,
        tenant_id=caller.tenant_id,
        mode=caller.mode,
        merchant_id=parse_id("mer", body.merchant_id),
        amount=body.amount,
        currency=body.currency,
        reference=body.reference,
        metadata=body.metadata,
        expires_at_ns=None
        if body.expires_in_s is None
        else now_ns() + body.expires_in_s * 1_000_000_000,
        automatic_capture=body.capture == "automatic",
        split_rule_id=parse_id("spl", body.split_rule_id) if body.split_rule_id else None,
    )
    return await _explained(runtime, payment_id)


@router.get("/payments/{payment_id}", summary="A payment, its history, fees and transfers.")
async def get_payment(payment_id: str, caller: Reader, runtime: Runtime) -> PaymentResponse:
    wanted = await _scoped(runtime, payment_id, tenant_id=caller.tenant_id, mode=caller.mode)
    return await _explained(runtime, wanted)


@router.post(
    "/payments/{payment_id}/capture",
    summary="Capture all or part of the hold.",
    responses={
        409: {
            "description": "Conflict (problem+json): `invalid_state_transition` (not"
            " authorized), `payment_expired`, `capture_in_progress` (another amount's"
            " capture is under way: `amount` names it), `account_frozen`, or a request"
            " with this `Idempotency-Key` still running"
        },
        422: {
            "description": "Unprocessable Entity (problem+json): `capture_exceeds_authorized`,"
            " `fees_exceed_amount`, invalid fields (listed in `errors`), or an"
            " `Idempotency-Key` reused with another body"
        },
    },
)
async def capture_payment(
    payment_id: str, body: CaptureRequest, caller: Writer, runtime: Runtime
) -> PaymentResponse:
    wanted = parse_id("pay", payment_id)
    await merchant.capture(
        runtime,
        tenant_id=caller.tenant_id,
        mode=caller.mode,
        payment_id=wanted,
        amount=body.amount,
    )
    return await _explained(runtime, wanted)


@router.post("/payments/{payment_id}/void", summary="Release the payer's hold.")
async def void_payment(payment_id: str, caller: Writer, runtime: Runtime) -> PaymentResponse:
    wanted = parse_id("pay", payment_id)
    await merchant.void(runtime, tenant_id=caller.tenant_id, mode=caller.mode, payment_id=wanted)
    return await _explained(runtime, wanted)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=201,
    summary="Refund all or part.",
    responses=RISK_ANSWERS,
)
async def refund_payment(
    payment_id: str,
    body: RefundCreate,
    caller: Writer,
    runtime: Runtime,
    request: Request,
    response: Response,
) -> PaymentResponse:
    wanted = parse_id("pay", payment_id)
    refund_id = await refunds.refund(
        runtime,
        tenant_id=caller.tenant_id,
        mode=caller.mode,
        payment_id=wanted,
        amount=body.amount,
        reason=body.reason,
        context=request_context(request),
    )
    explained = await _explained(runtime, wanted)
    created = format_id("ref", refund_id)
    if any(row.id == created and row.state == "in_review" for row in explained.refunds):
        response.status_code = 202
    return explained


@router.post("/payments/{payment_id}/disputes", status_code=201, summary="Open a dispute.")
async def dispute_payment(
    payment_id: str, body: DisputeOpenRequest, caller: Writer, runtime: Runtime
) -> PaymentResponse:
    wanted = await _scoped(runtime, payment_id, tenant_id=caller.tenant_id, mode=caller.mode)
    await open_dispute(
        runtime, payment_id=wanted, amount=body.amount, opened_by="tenant", reason=body.reason
    )
    return await _explained(runtime, wanted)


async def _dispute(runtime: PaymentsRuntime, dispute_id: str, caller: Principal) -> Dispute:
    wanted = parse_id("dsp", dispute_id)
    async with runtime.unit_of_work.begin() as session:
        dispute = await PaymentRepository(session).get_dispute(wanted)
        if dispute is None:
            raise DisputeNotFound("No such dispute.")
        try:
            await load(
                session, dispute.payment_id, tenant_id=caller.tenant_id, mode=caller.mode.value
            )
        except PaymentNotFound as error:
            raise DisputeNotFound("No such dispute.") from error
    return dispute


@router.post("/disputes/{dispute_id}/evidence", summary="Attach evidence to an open dispute.")
async def dispute_evidence(
    dispute_id: str, body: EvidenceRequest, caller: Writer, runtime: Runtime
) -> DisputeResponse:
    dispute = await _dispute(runtime, dispute_id, caller)
    updated = await add_evidence(
        runtime, dispute_id=dispute.id, kind=body.kind, description=body.description
    )
    return dispute_response(updated)


@router.post("/disputes/{dispute_id}/resolve", summary="Record a dispute won or lost.")
async def dispute_resolve(
    dispute_id: str, body: DisputeResolveRequest, caller: Writer, runtime: Runtime
) -> PaymentResponse:
    dispute = await _dispute(runtime, dispute_id, caller)
    await resolve_dispute(runtime, dispute_id=dispute.id, won=body.outcome == "won")
    return await _explained(runtime, dispute.payment_id)


@router.post("/split-rules", status_code=201, summary="A revenue-sharing rule.")
async def split_rule(body: SplitRuleCreate, caller: Writer, runtime: Runtime) -> SplitRuleResponse:
    async with runtime.unit_of_work.begin() as session:
        rule = await create_split_rule(
            session,
            tenant_id=caller.tenant_id,
            mode=caller.mode.value,
            name=body.name,
            shares=[(parse_id("mer", share.merchant_id), share.bps) for share in body.shares],
            levels=body.levels,
        )
    return SplitRuleResponse(id=format_id("spl", rule.id), name=rule.name, levels=rule.levels)


# -- wallet holders (access tokens)


@router.post(
    "/me/top-ups",
    status_code=201,
    summary="Add money from a card or bank.",
    responses=RISK_ANSWERS,
)
async def top_up(
    body: TopUpCreate,
    user: EndUser,
    runtime: Runtime,
    request: Request,
    response: Response,
    device_id: SigningDevice,
) -> PaymentResponse:
    payment_id = await topups.start_top_up(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.user_id,
        amount=body.amount,
        currency=body.currency,
        method=body.method,
        instrument=body.instrument,
        context=_user_context(request, device_id, body.step_up_token),
    )
    return _held(response, await _explained(runtime, payment_id))


@router.post(
    "/me/withdrawals",
    status_code=201,
    summary="Pay out to a card or bank.",
    responses=RISK_ANSWERS,
)
async def withdraw(
    body: WithdrawalCreate,
    user: EndUser,
    runtime: Runtime,
    request: Request,
    response: Response,
    device_id: SigningDevice,
) -> PaymentResponse:
    payment_id = await withdrawals.start_withdrawal(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.user_id,
        amount=body.amount,
        currency=body.currency,
        method=body.method,
        destination=body.destination,
        step_up_token=body.step_up_token,
        context=_user_context(request, device_id),
    )
    return _held(response, await _explained(runtime, payment_id))


@router.post(
    "/me/p2p",
    status_code=201,
    summary="Send money to another user.",
    responses={**RISK_ANSWERS, **RECIPIENT_NOT_FOUND},
)
async def send(
    body: P2PCreate,
    user: EndUser,
    runtime: Runtime,
    request: Request,
    response: Response,
    device_id: SigningDevice,
) -> PaymentResponse:
    payment_id = await p2p.send_p2p(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        sender_id=user.user_id,
        recipient=body.recipient,
        amount=body.amount,
        currency=body.currency,
        step_up_token=body.step_up_token,
        source_currency=body.source_currency,
        quote_id=None if body.quote_id is None else parse_id("fxq", body.quote_id),
        context=_user_context(request, device_id),
    )
    return _held(response, await _explained(runtime, payment_id))


@router.post(
    "/me/payments/{payment_id}/authorize",
    summary="Pay a merchant from the wallet.",
    responses=RISK_ANSWERS,
)
async def authorize(
    payment_id: str,
    user: EndUser,
    runtime: Runtime,
    request: Request,
    response: Response,
    device_id: SigningDevice,
    body: AuthorizeRequest | None = None,
) -> PaymentResponse:
    wanted = parse_id("pay", payment_id)
    choice = body or AuthorizeRequest()
    await merchant.authorize(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.user_id,
        payment_id=wanted,
        source_currency=choice.source_currency,
        quote_id=None if choice.quote_id is None else parse_id("fxq", choice.quote_id),
        context=_user_context(request, device_id, choice.step_up_token),
    )
    return _held(response, await _explained(runtime, wanted))


@router.get("/me/payments/{payment_id}", summary="One of the user's payments.")
async def my_payment(payment_id: str, user: EndUser, runtime: Runtime) -> PaymentResponse:
    wanted = parse_id("pay", payment_id)
    async with runtime.unit_of_work.read() as session:
        payment = await load(session, wanted, tenant_id=user.tenant_id, mode=user.mode.value)
    require_visible(payment, user.user_id)  # a payer sees what they would pay
    return await explain(runtime, payment)


@router.post(
    "/me/money-requests",
    status_code=201,
    summary="Ask another user for money.",
    responses=RECIPIENT_NOT_FOUND,
)
async def request_money(
    body: MoneyRequestCreate, user: EndUser, runtime: Runtime
) -> MoneyRequestResponse:
    created = await p2p.create_request(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        payee_id=user.user_id,
        payer=body.payer,
        amount=body.amount,
        currency=body.currency,
        note=body.note,
        expires_in_s=body.expires_in_s,
    )
    return money_request_response(created)


@router.get("/me/money-requests/{request_id}", summary="A money request.")
async def get_money_request(
    request_id: str, user: EndUser, runtime: Runtime
) -> MoneyRequestResponse:
    wanted = parse_id("req", request_id)
    async with runtime.unit_of_work.read() as session:
        found = await PaymentRepository(session).get_request(wanted)
    if found is None or user.user_id not in (found.payer_user_id, found.payee_user_id):
        raise MoneyRequestNotFound("No such money request.")
    return money_request_response(found)


@router.post(
    "/me/money-requests/{request_id}/approve",
    summary="Pay a money request.",
    responses=RISK_ANSWERS,
)
async def approve(
    request_id: str,
    user: EndUser,
    runtime: Runtime,
    request: Request,
    response: Response,
    device_id: SigningDevice,
    body: ApproveMoneyRequest | None = None,
) -> MoneyRequestResponse:
    choice = body or ApproveMoneyRequest()
    approved = await p2p.approve_request(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.user_id,
        request_id=parse_id("req", request_id),
        source_currency=choice.source_currency,
        quote_id=None if choice.quote_id is None else parse_id("fxq", choice.quote_id),
        context=_user_context(request, device_id, choice.step_up_token),
    )
    if approved.payment_id is not None:
        async with runtime.unit_of_work.begin() as session:
            paid = await load(session, approved.payment_id)
        if paid.state == "in_review":
            response.status_code = 202
    return money_request_response(approved)


@router.post("/me/money-requests/{request_id}/decline", summary="Decline a money request.")
async def decline(request_id: str, user: EndUser, runtime: Runtime) -> MoneyRequestResponse:
    declined = await p2p.decline_request(
        runtime,
        tenant_id=user.tenant_id,
        mode=user.mode,
        user_id=user.user_id,
        request_id=parse_id("req", request_id),
    )
    return money_request_response(declined)


# -- providers (public: the signature is the credential)

_REFERENCE = {"type": "string", "minLength": 1, "maxLength": 64}
NOTIFICATION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "type", "created", "data"],
    "properties": {
        "id": _REFERENCE,
        "type": {"type": "string", "enum": [kind.value for kind in NotificationType]},
        "created": {"type": "integer", "minimum": 0, "maximum": 2**40},
        "data": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reference", "provider_reference", "amount", "currency"],
            "properties": {
                "reference": _REFERENCE,
                "provider_reference": _REFERENCE,
                "amount": {"type": "integer", "minimum": 1, "maximum": 2**62},
                "currency": {"type": "string", "pattern": "^[A-Z0-9]{2,12}$"},
                "failure_code": {"type": ["string", "null"], "maxLength": 64},
                "dispute_id": {"type": ["string", "null"], "maxLength": 64},
            },
        },
    },
}
"""The sandbox providers' signed event (`billfold.connectors.sandbox`), as documented."""


@router.post(
    NOTIFICATIONS_ROUTE,
    status_code=202,
    summary="A provider's signed notification (public): stored, applied by the worker.",
    responses={
        400: {
            "description": "`invalid_notification`: signed, but not the provider's event (each"
            " field of its exact JSON type; an amount a JSON integer of minor units, 1 to"
            " 2^62): nothing is stored."
        },
        401: {"description": "`invalid_signature`: not signed by the provider."},
        413: {"description": "`payload_too_large`: the body is larger than the limit."},
        415: {
            "description": "`unsupported_media_type`: signed, but not sent as JSON"
            " (`unsupported_content_encoding`: sent in a content coding); nothing is stored."
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's signed event, read as raw bytes (the signature is"
            " over them). Header `Billfold-Signature: t=<unix seconds>,v1=<hex"
            ' HMAC-SHA256(secret, "<t>." + body)>`.',
            "content": {"application/json": {"schema": NOTIFICATION_SCHEMA}},
        }
    },
)
async def notification(provider: str, request: Request, runtime: Runtime) -> NotificationReceipt:
    body = await request.body()  # bounded by the application's body size limit
    stored = await receive_notification(
        runtime, provider=provider, body=body, headers=request.headers
    )
    return NotificationReceipt(
        notification_id=format_id("ntf", stored.id), duplicate=stored.duplicate
    )
