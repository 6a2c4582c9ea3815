"""Privacy decisions: the PII vault, tokenization, consent, export and erasure. Never
commits: the caller's unit of work does, so each change and its security event land
together or not at all.

Each end user's PII is encrypted under that user's own data keys (owner ``usr_…``, purpose
``pii``): erasure destroys them (crypto-shredding), which makes every copy of the
ciphertexts — replicas, backups — unreadable, and deletes the live rows. Search goes
through blind indexes, HMAC-SHA-256 under the tenant's stable ``blind_index`` key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import ActorType, SecurityEventType, record_security_event
from billfold.identity.users import service as users
from billfold.keys.envelope import FieldContext, canonical_aad
from billfold.keys.errors import KeyDestroyed
from billfold.keys.keyring import TENANT_OWNER, Keyring
from billfold.kit.auth import Principal
from billfold.kit.errors import InvariantViolation, invariant
from billfold.kit.ids import format_id, new_id
from billfold.privacy.errors import (
    ConsentNotFound,
    InvalidConsent,
    InvalidPiiValue,
    TokenNotFound,
)
from billfold.privacy.fields import SEARCHABLE_FIELDS, PiiField, normalize, validate
from billfold.privacy.models import Consent, PiiValue, Token
from billfold.privacy.repository import PrivacyRepository
from billfold.privacy.tokenization import (
    make_bank_account_token,
    make_pan_token,
    normalize_bank_account,
    normalize_pan,
)

__all__ = [
    "SEARCH_RESULTS_MAX",
    "TOKEN_ID_PREFIX",
    "Erasure",
    "TokenKind",
    "detokenize",
    "erase_user",
    "export_user",
    "grant_consent",
    "list_consents",
    "put_pii",
    "read_pii",
    "search_users",
    "tokenize",
    "withdraw_consent",
]

TOKEN_ID_PREFIX = "tok"  # noqa: S105 (an id prefix)
USER_ID_PREFIX = "usr"
SEARCH_RESULTS_MAX = 100
_TOKEN_ATTEMPTS_MAX = 8
PII_TABLE = "privacy_pii_values"
TokenKind = str  # "pan" | "bank_account"
CONSENT_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,63}", re.ASCII)
CONSENT_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}", re.ASCII)


def _check_consent(purpose: str, version: str | None) -> None:
    if not CONSENT_PURPOSE.fullmatch(purpose):
        raise InvalidConsent("A purpose is lowercase letters, digits and underscores.")
    if version is not None and not CONSENT_VERSION.fullmatch(version):
        raise InvalidConsent("A version is up to 32 letters, digits, dots and dashes.")


def _actor_id(principal: Principal) -> str:
    return format_id("key", principal.api_key_id)


async def _record(
    session: AsyncSession,
    principal: Principal,
    event_type: SecurityEventType,
    *,
    now_ns: int,
    subject_id: str | None = None,
    detail: Mapping[str, str | int | bool | None] | None = None,
) -> None:
    """A security event the caller's API key did in its tenant (and its audit entry)."""
    await record_security_event(
        session,
        tenant_id=principal.tenant_id,
        event_type=event_type,
        actor_type=ActorType.API_KEY,
        actor_id=_actor_id(principal),
        occurred_at=now_ns,
        subject_id=subject_id,
        detail=detail,
    )


def _owner(user_id: uuid.UUID) -> str:
    return format_id(USER_ID_PREFIX, user_id)


def _pii_context(tenant_id: uuid.UUID, user_id: uuid.UUID, field: str) -> FieldContext:
    return FieldContext(
        tenant_id=tenant_id, purpose="pii", table=PII_TABLE, column=field, row_id=user_id.hex
    )


async def _blind_index(
    session: AsyncSession,
    keyring: Keyring,
    *,
    principal: Principal,
    kind: str,
    normalized: str,
    now_ns: int,
) -> bytes:
    key = await keyring.stable_key(
        session,
        tenant_id=principal.tenant_id,
        purpose="blind_index",
        owner=TENANT_OWNER,
        now_ns=now_ns,
    )
    message = canonical_aad(principal.mode.value, kind, normalized)
    return hmac.new(key, message, hashlib.sha256).digest()


async def put_pii(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    user_id: uuid.UUID,
    values: Mapping[PiiField, str],
    now_ns: int,
) -> list[PiiField]:
    """Store (or replace) some of a user's fields; returns the fields the user now has."""
    # Erasure changes the user's row: locked here, a store racing an erasure either commits
    # first (the erasure then deletes its rows) or sees the keys destroyed, even through a
    # keyring whose cache still holds them.
    user = await users.get_user(session, principal=principal, user_id=user_id, for_update=True)
    checked = {field: validate(field, value) for field, value in values.items()}
    await keyring.check_not_destroyed(session, tenant_id=principal.tenant_id, owner=_owner(user.id))
    repository = PrivacyRepository(session)
    existing = {row.field: row for row in await repository.pii_values(user_id=user.id)}
    for field, value in checked.items():
        ciphertext = await keyring.encrypt(
            session,
            value.encode(),
            context=_pii_context(principal.tenant_id, user.id, field.value),
            owner=_owner(user.id),
            now_ns=now_ns,
        )
        blind = None
        if field in SEARCHABLE_FIELDS:
            blind = await _blind_index(
                session,
                keyring,
                principal=principal,
                kind=field.value,
                normalized=normalize(field, value),
                now_ns=now_ns,
            )
        row = existing.get(field.value)
        if row is None:
            row = PiiValue(
                id=new_id(),
                tenant_id=principal.tenant_id,
                mode=principal.mode.value,
                user_id=user.id,
                field=field.value,
                ciphertext=ciphertext,
                blind_index=blind,
                created_at=now_ns,
                updated_at=now_ns,
            )
            if await repository.add_if_absent(row):
                existing[field.value] = row
                continue
            # A concurrent request stored this field first: replace its value, as a PUT
            # after it would (the ciphertext is bound to the user and field, not the row).
            row = await repository.pii_value(user_id=user.id, field=field.value)
            if row is None:
                raise InvariantViolation("the concurrent writer's row exists")
            existing[field.value] = row
        row.ciphertext, row.blind_index, row.updated_at = ciphertext, blind, now_ns
    await session.flush()
    return sorted(PiiField(name) for name in existing)


async def read_pii(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    user_id: uuid.UUID,
    now_ns: int,
    audit_reveal: bool,
) -> dict[PiiField, str]:
    """A user's fields in the clear. `audit_reveal`: the caller will show them unmasked,
    which is recorded as a security event."""
    user = await users.get_user(session, principal=principal, user_id=user_id)
    values: dict[PiiField, str] = {}
    for row in await PrivacyRepository(session).pii_values(user_id=user.id):
        invariant(row.tenant_id == principal.tenant_id, "vault rows stay in their tenant")
        plaintext = await keyring.decrypt(
            session, row.ciphertext, context=_pii_context(row.tenant_id, user.id, row.field)
        )
        values[PiiField(row.field)] = plaintext.decode()
    if audit_reveal and values:
        await _record(
            session,
            principal,
            SecurityEventType.PII_REVEALED,
            now_ns=now_ns,
            subject_id=_owner(user.id),
            detail={"fields": ",".join(sorted(values))},
        )
    return values


async def search_users(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    field: PiiField,
    value: str,
    now_ns: int,
) -> list[uuid.UUID]:
    """The caller's users whose `field` equals `value` (after normalization), by blind
    index: nothing is decrypted."""
    if field not in SEARCHABLE_FIELDS:
        raise InvalidPiiValue(f"{field.value} is not searchable.", field=field.value)
    normalized = normalize(field, validate(field, value))
    blind = await _blind_index(
        session,
        keyring,
        principal=principal,
        kind=field.value,
        normalized=normalized,
        now_ns=now_ns,
    )
    return await PrivacyRepository(session).users_by_blind_index(
        tenant_id=principal.tenant_id,
        mode=principal.mode.value,
        field=field.value,
        blind_index=blind,
        limit=SEARCH_RESULTS_MAX,
    )


def _token_context(principal: Principal, row_id: uuid.UUID, kind: str) -> FieldContext:
    return FieldContext(
        tenant_id=principal.tenant_id,
        purpose="tokens",
        table="privacy_tokens",
        column=kind,
        row_id=row_id.hex,
    )


async def tokenize(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    kind: TokenKind,
    value: str,
    now_ns: int,
) -> Token:
    """The token for a card or account number; the same value always gets the same token."""
    normalized = normalize_pan(value) if kind == "pan" else normalize_bank_account(value)
    fingerprint = await _blind_index(
        session,
        keyring,
        principal=principal,
        kind=f"token:{kind}",
        normalized=normalized,
        now_ns=now_ns,
    )
    repository = PrivacyRepository(session)
    mode = principal.mode.value
    for _ in range(_TOKEN_ATTEMPTS_MAX):
        found = await repository.token_by_value(
            tenant_id=principal.tenant_id, mode=mode, kind=kind, fingerprint=fingerprint
        )
        if found is not None:
            return found
        surrogate = (
            make_pan_token(normalized) if kind == "pan" else make_bank_account_token(normalized)
        )
        if surrogate == normalized:
            continue
        row_id = new_id()
        row = Token(
            id=row_id,
            tenant_id=principal.tenant_id,
            mode=mode,
            kind=kind,
            token=surrogate,
            ciphertext=await keyring.encrypt(
                session,
                normalized.encode(),
                context=_token_context(principal, row_id, kind),
                owner=TENANT_OWNER,
                now_ns=now_ns,
            ),
            fingerprint=fingerprint,
            last4=normalized[-4:],
            created_at=now_ns,
        )
        if await repository.add_if_absent(row):
            return row
    raise AssertionError("token collisions exhausted the bounded attempts")  # ~never


async def detokenize(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    kind: TokenKind,
    token: str,
    now_ns: int,
) -> tuple[Token, str] | None:
    """The value behind a token; every success is a `pii.detokenized` security event.

    None when the caller's tenant and mode have no such token of that kind: that attempt
    is a `pii.detokenize_failed` event, so probing for tokens leaves a trace. The caller
    commits it, then answers TokenNotFound. The token tried is not recorded: it may be a
    real number sent by mistake, and the event would keep it in the clear."""
    row = await PrivacyRepository(session).token(
        tenant_id=principal.tenant_id, mode=principal.mode.value, kind=kind, token=token.strip()
    )
    if row is None:
        await _record(
            session,
            principal,
            SecurityEventType.PII_DETOKENIZE_FAILED,
            now_ns=now_ns,
            detail={"kind": kind, "mode": principal.mode.value, "reason": TokenNotFound.code},
        )
        return None
    plaintext = await keyring.decrypt(
        session, row.ciphertext, context=_token_context(principal, row.id, kind)
    )
    await _record(
        session,
        principal,
        SecurityEventType.PII_DETOKENIZED,
        now_ns=now_ns,
        subject_id=format_id(TOKEN_ID_PREFIX, row.id),
        detail={"kind": kind, "mode": principal.mode.value},
    )
    return row, plaintext.decode()


async def grant_consent(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    purpose: str,
    version: str,
    keyring: Keyring,
    now_ns: int,
) -> Consent:
    """Record the user's consent to `purpose` at `version`. It supersedes the version in
    force for that purpose, if any (ended at the same instant): one version is in force per
    purpose, so a withdrawal or a check of consent has one answer. An erased user gets no
    new consent (KeyDestroyed, as a store of their PII)."""
    _check_consent(purpose, version)
    # Locked: two grants of one purpose end each other's predecessor one after the other,
    # and a grant racing an erasure either commits first (and is withdrawn by it) or sees it.
    user = await users.get_user(session, principal=principal, user_id=user_id, for_update=True)
    if await keyring.owner_destroyed(session, tenant_id=principal.tenant_id, owner=_owner(user.id)):
        raise KeyDestroyed("The user was erased: no consent is recorded for them.")
    repository = PrivacyRepository(session)
    superseded = [
        row
        for row in await repository.consents(user_id=user.id)
        if row.purpose == purpose and row.withdrawn_at is None
    ]
    for previous in superseded:
        previous.withdrawn_at = now_ns
    row = Consent(
        id=new_id(),
        tenant_id=principal.tenant_id,
        mode=principal.mode.value,
        user_id=user.id,
        purpose=purpose,
        version=version,
        granted_at=now_ns,
        withdrawn_at=None,
    )
    await repository.add(row)
    detail: dict[str, str | int | bool | None] = {"purpose": purpose, "version": version}
    if superseded:
        detail["superseded"] = ",".join(previous.version for previous in superseded)
    await _record(
        session,
        principal,
        SecurityEventType.CONSENT_GRANTED,
        now_ns=now_ns,
        subject_id=_owner(user.id),
        detail=detail,
    )
    return row


async def list_consents(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID
) -> list[Consent]:
    user = await users.get_user(session, principal=principal, user_id=user_id)
    return list(await PrivacyRepository(session).consents(user_id=user.id))


async def withdraw_consent(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    purpose: str,
    now_ns: int,
) -> list[Consent]:
    """End every consent in force for `purpose`; ConsentNotFound when there is none."""
    _check_consent(purpose, None)
    in_force = [
        row
        for row in await list_consents(session, principal=principal, user_id=user_id)
        if row.purpose == purpose and row.withdrawn_at is None
    ]
    if not in_force:
        raise ConsentNotFound()
    for row in in_force:
        row.withdrawn_at = now_ns
    await session.flush()
    await _record(
        session,
        principal,
        SecurityEventType.CONSENT_WITHDRAWN,
        now_ns=now_ns,
        subject_id=_owner(user_id),
        detail={"purpose": purpose},
    )
    return in_force


async def export_user(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    user_id: uuid.UUID,
    now_ns: int,
) -> dict[str, object]:
    """Everything Billfold holds about the user in its privacy and identity records, as
    JSON-ready values (the `pii.exported` event records that it left)."""
    user = await users.get_user(session, principal=principal, user_id=user_id)
    pii = await read_pii(
        session,
        keyring=keyring,
        principal=principal,
        user_id=user_id,
        now_ns=now_ns,
        audit_reveal=False,
    )
    consents = await list_consents(session, principal=principal, user_id=user_id)
    await _record(
        session,
        principal,
        SecurityEventType.PII_EXPORTED,
        now_ns=now_ns,
        subject_id=_owner(user.id),
        detail={"fields": ",".join(sorted(pii))},
    )
    return {
        "user": {
            "id": _owner(user.id),
            "email": user.email,
            "phone": user.phone,
            "handle": user.handle,
            "status": user.status,
            "created_at_ns": user.created_at,
        },
        "pii": {field.value: value for field, value in sorted(pii.items())},
        "consents": [
            {
                "purpose": row.purpose,
                "version": row.version,
                "granted_at_ns": row.granted_at,
                "withdrawn_at_ns": row.withdrawn_at,
            }
            for row in consents
        ],
    }


@dataclass(frozen=True, slots=True)
class Erasure:
    user_id: uuid.UUID
    data_keys_destroyed: int
    values_deleted: int
    consents_withdrawn: int


async def erase_user(
    session: AsyncSession,
    *,
    keyring: Keyring,
    principal: Principal,
    user_id: uuid.UUID,
    now_ns: int,
) -> Erasure:
    """Crypto-shred a user: destroy their data keys, delete their vault rows, withdraw
    their consents, remove their sign-in identifiers. Ledger history is untouched."""
    user = await users.erase_user_identifiers(
        session, principal=principal, user_id=user_id, now_ns=now_ns
    )
    destroyed = await keyring.destroy_owner(
        session, tenant_id=principal.tenant_id, owner=_owner(user.id), now_ns=now_ns
    )
    deleted = await PrivacyRepository(session).delete_pii_values(user_id=user.id)
    withdrawn = 0
    for row in await PrivacyRepository(session).consents(user_id=user.id):
        if row.withdrawn_at is None:
            row.withdrawn_at = now_ns
            withdrawn += 1
    await session.flush()
    await _record(
        session,
        principal,
        SecurityEventType.PII_ERASED,
        now_ns=now_ns,
        subject_id=_owner(user.id),
        detail={"data_keys_destroyed": destroyed, "values_deleted": deleted},
    )
    return Erasure(
        user_id=user.id,
        data_keys_destroyed=destroyed,
        values_deleted=deleted,
        consents_withdrawn=withdrawn,
    )
