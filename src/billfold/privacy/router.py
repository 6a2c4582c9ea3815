"""The HTTP layer for privacy: parse, call the service, shape (and mask) the response.

Scopes: ``users:admin`` reads masked PII, searches and lists consents; ``pii:write``
stores PII, records consent, tokenizes; ``pii:read`` sees PII unmasked and exports it;
erasure needs ``pii:write`` and ``pii:read``; detokenizing needs ``pii:detokenize``. Users
of another tenant or mode are as absent as missing ones (404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from billfold.identity.auth import get_unit_of_work, require_scopes
from billfold.identity.types import Principal, Scope
from billfold.keys.keyring import Keyring
from billfold.keys.router import get_keyring
from billfold.kit.clock import SystemClock
from billfold.kit.db import UnitOfWork
from billfold.kit.http.caching import no_store
from billfold.kit.http.openapi import problem_responses
from billfold.kit.ids import format_id, parse_id
from billfold.privacy import service
from billfold.privacy.errors import TokenNotFound
from billfold.privacy.masking import mask_value
from billfold.privacy.schemas import (
    ConsentList,
    ConsentRequest,
    ConsentResponse,
    DetokenizedResponse,
    DetokenizeRequest,
    ErasureResponse,
    ExportResponse,
    PiiResponse,
    PiiSearchRequest,
    PiiSearchResponse,
    PiiUpdateRequest,
    TokenizeRequest,
    TokenResponse,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["privacy"], responses=problem_responses(401, 403, 422))
Work = Annotated[UnitOfWork, Depends(get_unit_of_work)]
Keys = Annotated[Keyring, Depends(get_keyring)]
Admin = Annotated[Principal, Depends(require_scopes(Scope.USERS_ADMIN))]
Writer = Annotated[Principal, Depends(require_scopes(Scope.PII_WRITE))]
Reader = Annotated[Principal, Depends(require_scopes(Scope.PII_READ))]
Eraser = Annotated[Principal, Depends(require_scopes(Scope.PII_WRITE, Scope.PII_READ))]
Detokenizer = Annotated[Principal, Depends(require_scopes(Scope.PII_DETOKENIZE))]
USER_ID_PREFIX = "usr"
_clock = SystemClock()


@router.put(
    "/users/{user_id}/pii",
    summary="Store or replace some of a user's personal data (encrypted at rest).",
    responses=problem_responses(400, 404, 503),
)
async def put_pii(
    user_id: str, body: PiiUpdateRequest, principal: Writer, unit_of_work: Work, keyring: Keys
) -> PiiResponse:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        await service.put_pii(
            session,
            keyring=keyring,
            principal=principal,
            user_id=parsed,
            values=body.values(),
            now_ns=_clock.now_ns(),
        )
        values = await service.read_pii(
            session,
            keyring=keyring,
            principal=principal,
            user_id=parsed,
            now_ns=_clock.now_ns(),
            audit_reveal=False,
        )
    masked = {field: mask_value(field.value, value) for field, value in values.items()}
    return PiiResponse(user_id=user_id, masked=True, fields=masked)


@router.get(
    "/users/{user_id}/pii",
    # Personal data, in full for pii:read: no cache along the way may keep it.
    dependencies=[Depends(no_store)],
    summary="A user's personal data: masked, or in full for a key holding pii:read.",
    responses=problem_responses(400, 404, 503),
)
async def get_pii(user_id: str, principal: Admin, unit_of_work: Work, keyring: Keys) -> PiiResponse:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    reveal = Scope.PII_READ.value in principal.scopes
    async with unit_of_work.begin() as session:
        values = await service.read_pii(
            session,
            keyring=keyring,
            principal=principal,
            user_id=parsed,
            now_ns=_clock.now_ns(),
            audit_reveal=reveal,
        )
    if not reveal:
        values = {field: mask_value(field.value, value) for field, value in values.items()}
    return PiiResponse(user_id=user_id, masked=not reveal, fields=values)


@router.post(
    "/pii/search",
    summary="Users whose field equals a value exactly, through blind indexes.",
    responses=problem_responses(503),
)
async def search_pii(
    body: PiiSearchRequest, principal: Admin, unit_of_work: Work, keyring: Keys
) -> PiiSearchResponse:
    async with unit_of_work.begin() as session:
        found = await service.search_users(
            session,
            keyring=keyring,
            principal=principal,
            field=body.field,
            value=body.value,
            now_ns=_clock.now_ns(),
        )
    return PiiSearchResponse(user_ids=[format_id(USER_ID_PREFIX, user) for user in found])


@router.get(
    "/users/{user_id}/export",
    dependencies=[Depends(no_store)],  # everything held about the user: never cached
    summary="Everything held about a user, as JSON (audited).",
    responses=problem_responses(400, 404, 503),
)
async def export_user(
    user_id: str, principal: Reader, unit_of_work: Work, keyring: Keys
) -> ExportResponse:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        document = await service.export_user(
            session, keyring=keyring, principal=principal, user_id=parsed, now_ns=_clock.now_ns()
        )
    return ExportResponse.model_validate(document)


@router.post(
    "/users/{user_id}/erasure",
    summary="Erase a user by crypto-shredding: their data keys are destroyed (audited).",
    responses=problem_responses(400, 404, 503),
)
async def erase_user(
    user_id: str, principal: Eraser, unit_of_work: Work, keyring: Keys
) -> ErasureResponse:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        erasure = await service.erase_user(
            session, keyring=keyring, principal=principal, user_id=parsed, now_ns=_clock.now_ns()
        )
    return ErasureResponse.from_erasure(erasure)


@router.post(
    "/users/{user_id}/consents",
    status_code=201,
    summary="Record a user's consent to a purpose at a version of its terms.",
    responses=problem_responses(400, 404),
)
async def grant_consent(
    user_id: str, body: ConsentRequest, principal: Writer, unit_of_work: Work, keyring: Keys
) -> ConsentResponse:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        row = await service.grant_consent(
            session,
            principal=principal,
            user_id=parsed,
            purpose=body.purpose,
            version=body.version,
            keyring=keyring,
            now_ns=_clock.now_ns(),
        )
    return ConsentResponse.from_model(row)


@router.get(
    "/users/{user_id}/consents",
    summary="A user's consent records, withdrawn ones included, oldest first.",
    responses=problem_responses(400, 404),
)
async def list_consents(user_id: str, principal: Admin, unit_of_work: Work) -> ConsentList:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.read() as session:
        rows = await service.list_consents(session, principal=principal, user_id=parsed)
    return ConsentList(items=[ConsentResponse.from_model(row) for row in rows])


_Purpose = Annotated[
    str,
    Path(
        description="The purpose consented to, as it was granted: lowercase letters, digits"
        " and underscores.",
        json_schema_extra={"pattern": f"^{service.CONSENT_PURPOSE.pattern}$"},
    ),
]
"""Documented, not enforced here: the service answers a purpose it never granted."""


@router.post(
    "/users/{user_id}/consents/{purpose}/withdraw",
    summary="Withdraw a user's consent to a purpose (audited).",
    responses=problem_responses(400, 404),
)
async def withdraw_consent(
    user_id: str, purpose: _Purpose, principal: Writer, unit_of_work: Work
) -> ConsentList:
    parsed = parse_id(USER_ID_PREFIX, user_id)
    async with unit_of_work.begin() as session:
        rows = await service.withdraw_consent(
            session, principal=principal, user_id=parsed, purpose=purpose, now_ns=_clock.now_ns()
        )
    return ConsentList(items=[ConsentResponse.from_model(row) for row in rows])


@router.post(
    "/tokens",
    summary="Tokenize a card or bank account number (the same value, the same token).",
    responses=problem_responses(503),
)
async def tokenize(
    body: TokenizeRequest, principal: Writer, unit_of_work: Work, keyring: Keys
) -> TokenResponse:
    async with unit_of_work.begin() as session:
        row = await service.tokenize(
            session,
            keyring=keyring,
            principal=principal,
            kind=body.kind,
            value=body.value,
            now_ns=_clock.now_ns(),
        )
    return TokenResponse.from_model(row)


@router.post(
    "/tokens/detokenize",
    # The answer is the card or account number: an Idempotency-Key must neither keep it
    # in the clear nor replay it without a `pii.detokenized` event.
    dependencies=[Depends(no_store)],
    summary="The number behind a token; needs pii:detokenize, every use audited.",
    responses=problem_responses(404, 503),
)
async def detokenize(
    body: DetokenizeRequest, principal: Detokenizer, unit_of_work: Work, keyring: Keys
) -> DetokenizedResponse:
    async with unit_of_work.begin() as session:
        found = await service.detokenize(
            session,
            keyring=keyring,
            principal=principal,
            kind=body.kind,
            token=body.token,
            now_ns=_clock.now_ns(),
        )
    if found is None:
        # Raised once the unit of work has committed the failed attempt's event.
        raise TokenNotFound()
    row, value = found
    return DetokenizedResponse(
        id=format_id(service.TOKEN_ID_PREFIX, row.id), kind=body.kind, token=row.token, value=value
    )
