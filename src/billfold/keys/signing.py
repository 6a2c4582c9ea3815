"""Ed25519 signing keys in the key hierarchy, with rotation, and their JWKS publication.

Each (tenant, purpose) has versioned signing keys; the private half (the 32-byte seed) is
envelope-encrypted under the tenant's ``signing`` key-encryption key, so it is protected by
the keystore (and the HSM) like any field. ``active_signer`` returns an object satisfying
``billfold.kit.signing.Signer``; keys rotated out stay published (``verify_only``) until
retired, so signatures made before a rotation still verify.

Public keys are published as RFC 7517 JSON Web Keys of RFC 8037's OKP type::

    {"kty": "OKP", "crv": "Ed25519", "x": BASE64URL(public key), "kid": "sig_<hex>",
     "use": "sig", "alg": "EdDSA"}

The platform's keys (tenant = the nil UUID) at ``GET /.well-known/jwks.json`` (public), a
tenant's at ``GET /v1/jwks`` (its API keys).

:class:`HierarchySigningKeys` hands one purpose's keys to a consumer that may not import
this package (the audit log signs its checkpoints with the platform's ``audit`` keys): it
satisfies ``billfold.kit.signing.SigningKeys``.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity.security_events import SecurityEventType, record_security_event
from billfold.keys.envelope import FieldContext
from billfold.keys.errors import (
    ConcurrentRotation,
    DecryptionFailed,
    InvalidPurpose,
    KeyDestroyed,
    KeyVersionActive,
    KeyVersionNotFound,
)
from billfold.keys.keyring import PLATFORM_TENANT_ID, Keyring
from billfold.keys.models import SigningKey
from billfold.keys.repository import KeyRepository
from billfold.keys.service import KeyActor
from billfold.kit.errors import invariant
from billfold.kit.ids import format_id, new_id, parse_id
from billfold.kit.signing import Signer

__all__ = [
    "SIGNING_KEY_ID_PREFIX",
    "HierarchySigningKeys",
    "KeySigner",
    "active_signer",
    "jwk_of",
    "jwks_of",
    "public_key_from_jwk",
    "published_signing_keys",
    "retire_signing_key",
    "rotate_signing_key",
    "signature_keys_of_jwks",
    "signing_keys_not_for",
    "verify_with_jwk",
]

SIGNING_KEY_ID_PREFIX = "sig"
_PURPOSE = re.compile(r"[a-z][a-z_]{0,31}", re.ASCII)
_KID = re.compile(SIGNING_KEY_ID_PREFIX + r"_[0-9a-f]{32}", re.ASCII)
_SEED_BYTES = 32

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeySigner:
    """A decrypted signing key version: satisfies ``billfold.kit.signing.Signer``."""

    key_id: str
    _private_key: Ed25519PrivateKey

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def public_key_raw(self) -> bytes:
        return self._private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _check_purpose(purpose: str) -> str:
    if not _PURPOSE.fullmatch(purpose):
        raise InvalidPurpose("A signing purpose is lowercase letters and underscores.")
    return purpose


def _seed_context(row: SigningKey) -> FieldContext:
    return FieldContext(
        tenant_id=row.tenant_id,
        purpose="signing",
        table="keys_signing_keys",
        column="encrypted_private_key",
        row_id=row.id.hex,
    )


def _kid(row: SigningKey) -> str:
    return format_id(SIGNING_KEY_ID_PREFIX, row.id)


async def _new_version(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID,
    purpose: str,
    version: int,
    now_ns: int,
) -> tuple[SigningKey, KeySigner]:
    private_key = Ed25519PrivateKey.generate()
    seed = private_key.private_bytes_raw()
    row = SigningKey(
        id=new_id(),
        tenant_id=tenant_id,
        purpose=purpose,
        version=version,
        status="active",
        public_key=private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        created_at=now_ns,
        retired_at=None,
    )
    row.encrypted_private_key = await keyring.encrypt(
        session, seed, context=_seed_context(row), owner=f"signing:{purpose}", now_ns=now_ns
    )
    if not await KeyRepository(session).add_if_absent(row):
        raise ConcurrentRotation(version=version)
    return row, KeySigner(key_id=_kid(row), _private_key=private_key)


async def _signer_of(session: AsyncSession, keyring: Keyring, row: SigningKey) -> KeySigner:
    if row.encrypted_private_key is None:
        raise KeyVersionNotFound("The signing key is retired.")
    seed = await keyring.decrypt(session, row.encrypted_private_key, context=_seed_context(row))
    invariant(len(seed) == _SEED_BYTES, "a signing key seed is 32 bytes")
    return KeySigner(key_id=_kid(row), _private_key=Ed25519PrivateKey.from_private_bytes(seed))


async def active_signer(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID = PLATFORM_TENANT_ID,
    purpose: str = "audit",
    now_ns: int,
) -> Signer:
    """The active signing key for (tenant, purpose), created at version 1 on first use."""
    _check_purpose(purpose)
    rows = await KeyRepository(session).signing_keys(tenant_id=tenant_id, purpose=purpose)
    active = next((row for row in rows if row.status == "active"), None)
    if active is not None:
        return await _signer_of(session, keyring, active)
    version = rows[0].version + 1 if rows else 1
    _row, signer = await _new_version(
        session,
        keyring=keyring,
        tenant_id=tenant_id,
        purpose=purpose,
        version=version,
        now_ns=now_ns,
    )
    return signer


async def rotate_signing_key(
    session: AsyncSession,
    *,
    keyring: Keyring,
    tenant_id: uuid.UUID,
    purpose: str,
    actor: KeyActor,
    now_ns: int,
) -> SigningKey:
    """A new active version; the previous one stays published as verify-only."""
    _check_purpose(purpose)
    rows = await KeyRepository(session).signing_keys(tenant_id=tenant_id, purpose=purpose)
    for row in rows:
        if row.status == "active":
            row.status = "verify_only"
    await session.flush()
    version = rows[0].version + 1 if rows else 1
    row, _signer = await _new_version(
        session,
        keyring=keyring,
        tenant_id=tenant_id,
        purpose=purpose,
        version=version,
        now_ns=now_ns,
    )
    await record_security_event(
        session,
        tenant_id=None if tenant_id == PLATFORM_TENANT_ID else tenant_id,
        event_type=SecurityEventType.SIGNING_KEY_ROTATED,
        actor_type=actor.actor_type,
        actor_id=actor.actor_id,
        occurred_at=now_ns,
        subject_id=_kid(row),
        detail={"purpose": purpose, "version": version},
    )
    return row


async def retire_signing_key(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    key_id: str,
    actor: KeyActor,
    now_ns: int,
) -> SigningKey:
    """Unpublish a verify-only version and erase its private key."""
    row = await session.get(SigningKey, parse_id(SIGNING_KEY_ID_PREFIX, key_id))
    if row is None or row.tenant_id != tenant_id:
        raise KeyVersionNotFound(f"No signing key {key_id}.")
    if row.status == "active":
        raise KeyVersionActive("Rotate the signing key before retiring this version.")
    if row.status != "retired":
        row.status, row.encrypted_private_key, row.retired_at = "retired", None, now_ns
        await session.flush()
        await record_security_event(
            session,
            tenant_id=None if tenant_id == PLATFORM_TENANT_ID else tenant_id,
            event_type=SecurityEventType.SIGNING_KEY_RETIRED,
            actor_type=actor.actor_type,
            actor_id=actor.actor_id,
            occurred_at=now_ns,
            subject_id=key_id,
            detail={"purpose": row.purpose, "version": row.version},
        )
    return row


async def published_signing_keys(
    session: AsyncSession, *, tenant_id: uuid.UUID
) -> list[SigningKey]:
    """Every active and verify-only version of every purpose."""
    rows = await KeyRepository(session).signing_keys(tenant_id=tenant_id, purpose=None)
    return [row for row in rows if row.status != "retired"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk_of(row: SigningKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(row.public_key),
        "kid": _kid(row),
        "use": "sig",
        "alg": "EdDSA",
    }


def jwks_of(rows: list[SigningKey]) -> dict[str, list[dict[str, str]]]:
    return {"keys": [jwk_of(row) for row in rows]}


def _is_signature_key(jwk: Mapping[str, object]) -> bool:
    """Whether a JWK is published as `jwk_of` publishes signing keys: Ed25519 for
    signatures. Keys for encryption, another algorithm or another kid scheme are not."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        return False
    if jwk.get("use") != "sig" or jwk.get("alg") != "EdDSA":
        return False
    operations = jwk.get("key_ops")
    if operations is not None and (not isinstance(operations, list) or "verify" not in operations):
        return False
    kid = jwk.get("kid")
    return isinstance(kid, str) and _KID.fullmatch(kid) is not None


def signature_keys_of_jwks(document: object) -> dict[str, bytes]:
    """Key id → raw Ed25519 public key of each key of a JWKS document (a saved
    `/.well-known/jwks.json`) published for signatures, as `jwk_of` publishes them
    (`kty` OKP, `crv` Ed25519, `use` sig, `alg` EdDSA, `kid` sig_…); other keys are
    skipped. ValueError when the document is no JWKS, a kept key is malformed, one kid names
    two keys (which one signed would be ambiguous), or no key is left."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a list of keys")
    keys: dict[str, bytes] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping):
            raise ValueError("each key of a JWKS is an object")
        if not _is_signature_key(jwk):
            continue
        kid = str(jwk["kid"])
        if kid in keys:
            raise ValueError(f"the kid {kid} names two keys")
        keys[kid] = public_key_from_jwk(jwk).public_bytes(Encoding.Raw, PublicFormat.Raw)
    if not keys:
        raise ValueError('no Ed25519 key with "use": "sig", "alg": "EdDSA" and a kid sig_…')
    return keys


async def signing_keys_not_for(
    session: AsyncSession, key_ids: Iterable[str], *, tenant_id: uuid.UUID, purpose: str
) -> dict[str, str]:
    """Of `key_ids`, those the database knows as signing keys of another tenant or
    purpose, each with what it is for: a JWKS does not say a key's purpose, and a
    platform's JWKS holds every purpose's keys. It can only narrow trust: a key it does not
    know (a saved JWKS outliving its rows) is left to the caller."""
    foreign: dict[str, str] = {}
    for kid in key_ids:
        if _KID.fullmatch(kid) is None:
            continue
        row = await session.get(SigningKey, parse_id(SIGNING_KEY_ID_PREFIX, kid))
        if row is None:
            continue
        if row.tenant_id != tenant_id:
            foreign[kid] = f"a tenant's {row.purpose} key"
        elif row.purpose != purpose:
            foreign[kid] = f"a {row.purpose} key"
    return foreign


def public_key_from_jwk(jwk: Mapping[str, object]) -> Ed25519PublicKey:
    """The Ed25519 public key of an OKP JWK; ValueError for anything else."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("not an Ed25519 OKP key")
    x = jwk.get("x")
    if not isinstance(x, str) or len(x) != 43:
        raise ValueError("x is the base64url of 32 bytes")
    try:
        raw = base64.b64decode(x.replace("-", "+").replace("_", "/") + "=", validate=True)
    except ValueError as error:
        raise ValueError("x is not base64url") from error
    if len(raw) != 32:
        raise ValueError("x is the base64url of 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_with_jwk(jwk: Mapping[str, object], message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the JWK's key's Ed25519 signature over `message`."""
    try:
        public_key_from_jwk(jwk).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class HierarchySigningKeys:
    """One (tenant, purpose)'s signing keys, for consumers that know only
    ``billfold.kit.signing.SigningKeys``: the active version signs; every published
    version (active and verify-only) is trusted, but only when the keystore vouches for it
    (its encrypted seed decrypts to the published public key), so a public key row written
    straight into the database is not trusted."""

    def __init__(
        self, keyring: Keyring, *, tenant_id: uuid.UUID = PLATFORM_TENANT_ID, purpose: str
    ) -> None:
        self._keyring = keyring
        self._tenant_id = tenant_id
        self._purpose = _check_purpose(purpose)

    async def active_signer(self, session: AsyncSession, *, now_ns: int) -> Signer:
        return await active_signer(
            session,
            keyring=self._keyring,
            tenant_id=self._tenant_id,
            purpose=self._purpose,
            now_ns=now_ns,
        )

    async def trusted_keys(self, session: AsyncSession) -> Mapping[str, bytes]:
        rows = await KeyRepository(session).signing_keys(
            tenant_id=self._tenant_id, purpose=self._purpose
        )
        trusted: dict[str, bytes] = {}
        for row in rows:
            if row.status == "retired":
                continue
            try:
                signer = await _signer_of(session, self._keyring, row)
            except (DecryptionFailed, KeyDestroyed, KeyVersionNotFound):
                log.warning("keys.signing_key_unvouched", kid=_kid(row), purpose=row.purpose)
                continue
            if signer.public_key_raw() == bytes(row.public_key):
                trusted[signer.key_id] = bytes(row.public_key)
            else:
                log.warning("keys.signing_key_unvouched", kid=_kid(row), purpose=row.purpose)
        return trusted
