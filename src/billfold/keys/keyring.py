"""Envelope encryption over the key hierarchy, with unwrapped keys cached in memory.

``Keyring`` is the one object the rest of Billfold encrypts through::

    ciphertext = await keyring.encrypt(session, b"...", context=context, owner="usr_…")
    plaintext = await keyring.decrypt(session, ciphertext, context=context)

The first use for a (tenant, purpose) creates key-encryption key version 1. New data goes
under the owner's data key for the active version (created on first use); old ciphertexts
name their data key in their header, whatever version wraps it now. Unwrapped keys are
cached (bounded entries, bounded age, counted from when they were unwrapped, not from
their last use). A rotation, retirement or destruction made through this keyring evicts
what it changed at once; one made by another process is seen here after at most
``cache_ttl_s`` (default 30 s): until then this process may still encrypt new data under
the previous version's data key (readable and rewrapped later, never lost) and decrypt
data whose keys were destroyed there.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.keys.envelope import (
    KEY_BYTES,
    FieldContext,
    canonical_aad,
    open_field,
    parse_field,
    seal,
    seal_field,
    unseal,
)
from billfold.keys.errors import (
    DecryptionFailed,
    InvalidPurpose,
    KeyDestroyed,
    KeystoreUnavailable,
    KeyVersionNotFound,
)
from billfold.keys.keystore import Keystore
from billfold.keys.models import OWNER_LENGTH_MAX, DataKey, KeyEncryptionKey
from billfold.keys.repository import KeyRepository
from billfold.kit.errors import invariant
from billfold.kit.ids import new_id

__all__ = [
    "DEFAULT_CACHE_TTL_S",
    "PLATFORM_TENANT_ID",
    "PURPOSES",
    "STABLE_SLOT",
    "TENANT_OWNER",
    "Keyring",
    "data_key_aad",
    "kek_aad",
]

PLATFORM_TENANT_ID = uuid.UUID(int=0)
"""The tenant id of platform-wide keys (the platform's signing keys)."""
TENANT_OWNER = "tenant"
"""The owner of a tenant's shared data keys (tokens, blind indexes)."""
STABLE_SLOT = "stable"
SHREDDED_SLOT = "shredded"
"""The slot of the destroyed placeholder key of an owner erased before any key was made."""
DEFAULT_CACHE_TTL_S = 30.0
"""How long another process's rotation, retirement or crypto-shredding can go unseen here."""
PURPOSES = frozenset({"pii", "tokens", "blind_index", "signing", "totp", "webhooks"})
"""Every purpose a key-encryption key may have; each is rotated on its own."""

K = TypeVar("K")
V = TypeVar("V")


class _BoundedCache(Generic[K, V]):
    """Least recently used first out, each entry forgotten `ttl_s` after it was stored."""

    def __init__(
        self, *, entries_max: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        invariant(entries_max >= 1 and ttl_s > 0, "the cache is bounded")
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._entries_max = entries_max
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        found = self.get_entry(key)
        return None if found is None else found[0]

    def get_entry(self, key: K) -> tuple[V, float] | None:
        """The value and when it expires."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if found[1] <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found

    def put(self, key: K, value: V, *, expires_at: float | None = None) -> float:
        """Store `value` for the TTL, or until `expires_at` when it derives from an entry
        that expires then (a derived copy must not outlive its source); returns when."""
        with self._lock:
            expiry = self._clock() + self._ttl_s if expires_at is None else expires_at
            self._entries[key] = (value, expiry)
            self._entries.move_to_end(key)
            while len(self._entries) > self._entries_max:
                self._entries.popitem(last=False)
            return expiry

    def evict(self, predicate: Callable[[K], bool]) -> None:
        with self._lock:
            for key in [key for key in self._entries if predicate(key)]:
                del self._entries[key]


def kek_aad(*, tenant_id: uuid.UUID, purpose: str, version: int) -> bytes:
    return canonical_aad("billfold.kek.v1", tenant_id.bytes, purpose, str(version))


def data_key_aad(row: DataKey, *, kek_version: int) -> bytes:
    return canonical_aad(
        "billfold.dek.v1",
        row.tenant_id.bytes,
        row.purpose,
        row.owner,
        row.id.bytes,
        str(kek_version),
    )


@dataclass(frozen=True, slots=True)
class _CurrentKey:
    data_key_id: uuid.UUID
    cipher: AESGCM


def check_purpose(purpose: str) -> str:
    if purpose not in PURPOSES:
        raise InvalidPurpose(f"The purpose must be one of {', '.join(sorted(PURPOSES))}.")
    return purpose


class Keyring:
    """The key hierarchy under one keystore, opened on first use."""

    def __init__(
        self,
        open_keystore: Callable[[], Keystore],
        *,
        cache_entries_max: int = 10_000,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open_keystore = open_keystore
        self._keystore: Keystore | None = None
        self._open_lock = threading.Lock()
        # Keyed by row id, never by version: a version made in a rolled-back transaction
        # must not be mistaken for the one another writer commits under the same number.

        def cache() -> _BoundedCache[Any, Any]:
            return _BoundedCache(
                entries_max=cache_entries_max, ttl_s=cache_ttl_s, clock=cache_clock
            )

        self._keks: _BoundedCache[uuid.UUID, AESGCM] = cache()
        self._data_keys: _BoundedCache[uuid.UUID, bytes] = cache()
        self._ciphers: _BoundedCache[uuid.UUID, AESGCM] = cache()
        self._current: _BoundedCache[tuple[uuid.UUID, str, str], _CurrentKey] = cache()

    @property
    def keystore(self) -> Keystore:
        """The keystore, opened now if it is not yet (KeystoreUnavailable when it cannot)."""
        if self._keystore is None:
            with self._open_lock:
                if self._keystore is None:
                    self._keystore = self._open_keystore()
        return self._keystore

    def close(self) -> None:
        if self._keystore is not None:
            self._keystore.close()
            self._keystore = None

    # -- key-encryption keys -------------------------------------------------------------

    def new_key_encryption_key(
        self, *, tenant_id: uuid.UUID, purpose: str, version: int, now_ns: int
    ) -> KeyEncryptionKey:
        """A fresh random key, wrapped by the root key, as an unsaved row."""
        keystore = self.keystore
        wrapped = keystore.wrap(
            os.urandom(KEY_BYTES),
            aad=kek_aad(tenant_id=tenant_id, purpose=purpose, version=version),
        )
        return KeyEncryptionKey(
            id=new_id(),
            tenant_id=tenant_id,
            purpose=purpose,
            version=version,
            status="active",
            keystore_key_id=keystore.key_id,
            wrapped_key=wrapped,
            created_at=now_ns,
            retired_at=None,
        )

    async def active_version(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, purpose: str, now_ns: int
    ) -> KeyEncryptionKey:
        """The active version, creating version 1 on first use."""
        check_purpose(purpose)
        keys = KeyRepository(session)
        active = await keys.active_key_encryption_key(tenant_id=tenant_id, purpose=purpose)
        if active is not None:
            return active
        first = self.new_key_encryption_key(
            tenant_id=tenant_id, purpose=purpose, version=1, now_ns=now_ns
        )
        if await keys.add_if_absent(first):
            return first
        active = await keys.active_key_encryption_key(tenant_id=tenant_id, purpose=purpose)
        invariant(active is not None, "a concurrent first version exists")
        assert active is not None
        return active

    def kek_cipher(self, row: KeyEncryptionKey) -> AESGCM:
        cache_key = row.id
        cipher = self._keks.get(cache_key)
        if cipher is not None:
            return cipher
        if row.wrapped_key is None:
            raise KeyVersionNotFound(f"Key version {row.version} of {row.purpose} is retired.")
        try:
            raw = self.keystore.unwrap(
                row.wrapped_key,
                aad=kek_aad(tenant_id=row.tenant_id, purpose=row.purpose, version=row.version),
            )
        except DecryptionFailed as error:
            # Not the data's fault: this keystore's root key is not the one that wrapped it.
            raise KeystoreUnavailable(
                f"The root key {self.keystore.key_id} does not unwrap {row.purpose} key"
                f" version {row.version} (wrapped by {row.keystore_key_id}): wrong master key,"
                " passphrase file or HSM key?"
            ) from error
        cipher = AESGCM(raw)
        self._keks.put(cache_key, cipher)
        return cipher

    async def kek_cipher_for_version(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, purpose: str, version: int
    ) -> AESGCM:
        row = await KeyRepository(session).key_encryption_key(
            tenant_id=tenant_id, purpose=purpose, version=version
        )
        if row is None:
            raise KeyVersionNotFound(f"No version {version} of {purpose} keys.")
        return self.kek_cipher(row)

    def forget_key_encryption_key(self, session: AsyncSession, row_id: uuid.UUID) -> None:
        """After a retirement in `session`: its key leaves the cache now and at commit."""
        _now_and_at_commit(session, lambda: self._keks.evict(lambda key: key == row_id))

    def forget_version(self, session: AsyncSession, *, tenant_id: uuid.UUID, purpose: str) -> None:
        """After a rotation in `session`: the next encryption reads the new state."""
        _now_and_at_commit(
            session,
            lambda: self._current.evict(lambda key: key[0] == tenant_id and key[1] == purpose),
        )

    # -- data keys -----------------------------------------------------------------------

    def wrap_data_key(self, row: DataKey, raw: bytes, *, kek: KeyEncryptionKey) -> None:
        row.kek_version = kek.version
        row.wrapped_key = seal(
            self.kek_cipher(kek), raw, aad=data_key_aad(row, kek_version=kek.version)
        )

    async def unwrap_data_key(self, session: AsyncSession, row: DataKey) -> bytes:
        raw, _expires_at = await self._unwrapped(session, row)
        return raw

    async def _unwrapped(self, session: AsyncSession, row: DataKey) -> tuple[bytes, float]:
        """The raw data key and when its cached copy expires, which is when every cache
        entry made from it must expire too: the TTL counts from the unwrapping, so a key
        destroyed elsewhere stays usable here at most that long, however often it is used."""
        cached = self._data_keys.get_entry(row.id)
        if cached is not None:
            return cached
        if row.wrapped_key is None:
            raise KeyDestroyed()
        kek = await self.kek_cipher_for_version(
            session, tenant_id=row.tenant_id, purpose=row.purpose, version=row.kek_version
        )
        raw = unseal(kek, row.wrapped_key, aad=data_key_aad(row, kek_version=row.kek_version))
        return raw, self._data_keys.put(row.id, raw)

    async def _data_key_in_slot(
        self,
        session: AsyncSession,
        *,
        tenant_id: uuid.UUID,
        purpose: str,
        owner: str,
        slot: str | None,
        now_ns: int,
    ) -> tuple[DataKey, bytes, float | None]:
        """The owner's key in `slot` (the active version's when None), made when missing,
        and when its cached unwrapping expires; None when made now (not yet committed: the
        caller must not cache it)."""
        invariant(0 < len(owner) <= OWNER_LENGTH_MAX, "an owner is a short id")
        kek = await self.active_version(
            session, tenant_id=tenant_id, purpose=purpose, now_ns=now_ns
        )
        chosen = slot or f"v{kek.version}"
        keys = KeyRepository(session)
        row = await keys.data_key_in_slot(
            tenant_id=tenant_id, purpose=purpose, owner=owner, slot=chosen
        )
        if row is None:
            # A key made in a slot the destruction never saw (the next version's, after a
            # rotation) would store the owner's data again.
            await self.check_not_destroyed(session, tenant_id=tenant_id, owner=owner)
            raw = os.urandom(KEY_BYTES)
            row = DataKey(
                id=new_id(),
                tenant_id=tenant_id,
                purpose=purpose,
                owner=owner,
                slot=chosen,
                created_at=now_ns,
                destroyed_at=None,
            )
            self.wrap_data_key(row, raw, kek=kek)
            if await keys.add_if_absent(row):
                return row, raw, None
            row = await keys.data_key_in_slot(
                tenant_id=tenant_id, purpose=purpose, owner=owner, slot=chosen
            )
            invariant(row is not None, "a concurrent writer made the data key")
            assert row is not None
        return row, *await self._unwrapped(session, row)

    async def check_not_destroyed(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, owner: str
    ) -> None:
        """KeyDestroyed when `owner`'s keys were destroyed, as committed now (a cached key
        may be older): crypto-shredding is final, nothing more is encrypted for them."""
        if await self.owner_destroyed(session, tenant_id=tenant_id, owner=owner):
            raise KeyDestroyed("The owner's keys were destroyed: nothing is encrypted for them.")

    async def owner_destroyed(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, owner: str
    ) -> bool:
        """Whether `owner` was crypto-shredded, as committed now (never from a cache)."""
        return await KeyRepository(session).owner_destroyed(tenant_id=tenant_id, owner=owner)

    async def stable_key(
        self, session: AsyncSession, *, tenant_id: uuid.UUID, purpose: str, owner: str, now_ns: int
    ) -> bytes:
        """A key that never changes for (tenant, purpose, owner): blind-index keys.
        Rotation rewraps it; only destroying the owner's keys ends it."""
        _row, raw, _expires_at = await self._data_key_in_slot(
            session,
            tenant_id=tenant_id,
            purpose=purpose,
            owner=owner,
            slot=STABLE_SLOT,
            now_ns=now_ns,
        )
        return raw

    async def encrypt(
        self,
        session: AsyncSession,
        plaintext: bytes,
        *,
        context: FieldContext,
        owner: str,
        now_ns: int,
    ) -> bytes:
        """A field ciphertext bound to `context`, under `owner`'s current data key."""
        cache_key = (context.tenant_id, context.purpose, owner)
        current = self._current.get(cache_key)
        if current is None:
            row, raw, expires_at = await self._data_key_in_slot(
                session,
                tenant_id=context.tenant_id,
                purpose=context.purpose,
                owner=owner,
                slot=None,
                now_ns=now_ns,
            )
            current = _CurrentKey(data_key_id=row.id, cipher=AESGCM(raw))
            if expires_at is not None:  # a key made in this transaction exists only if it commits
                self._current.put(cache_key, current, expires_at=expires_at)
                self._ciphers.put(row.id, current.cipher, expires_at=expires_at)
        return seal_field(
            current.cipher, plaintext, context=context, data_key_id=current.data_key_id
        )

    async def decrypt(
        self, session: AsyncSession, ciphertext: bytes, *, context: FieldContext
    ) -> bytes:
        """The plaintext, if `ciphertext` was made for exactly `context`; KeyDestroyed when
        its data key was destroyed, DecryptionFailed when anything else does not match."""
        data_key_id = parse_field(ciphertext)
        cipher = self._ciphers.get(data_key_id)
        if cipher is None:
            row = await KeyRepository(session).data_key(data_key_id)
            if row is None:
                raise DecryptionFailed("The ciphertext names an unknown data key.")
            if row.tenant_id != context.tenant_id or row.purpose != context.purpose:
                raise DecryptionFailed()
            raw, expires_at = await self._unwrapped(session, row)
            cipher = AESGCM(raw)
            self._ciphers.put(data_key_id, cipher, expires_at=expires_at)
        return open_field(cipher, ciphertext, context=context)

    async def destroy_owner(
        self,
        session: AsyncSession,
        *,
        tenant_id: uuid.UUID,
        owner: str,
        now_ns: int,
        purpose: str = "pii",
    ) -> int:
        """Crypto-shred: destroy every data key of `owner`; returns how many. The owner gets
        no new data key afterwards, not even under a later version.

        An owner with no key yet (a user erased before any PII was stored) gets a destroyed
        placeholder key, counted in nothing: "destroyed" is what refuses every later store
        for them, and without it a store after the erasure was accepted."""
        keys = KeyRepository(session)
        destroyed = await keys.destroy_owner_data_keys(
            tenant_id=tenant_id, owner=owner, now_ns=now_ns
        )
        if not destroyed and not await keys.owner_destroyed(tenant_id=tenant_id, owner=owner):
            placeholder = DataKey(
                id=new_id(),
                tenant_id=tenant_id,
                purpose=purpose,
                owner=owner,
                slot=SHREDDED_SLOT,
                kek_version=0,
                wrapped_key=None,
                created_at=now_ns,
                destroyed_at=now_ns,
            )
            await keys.add_if_absent(placeholder)  # False: a concurrent erasure made it
        gone = set(destroyed)

        def evict() -> None:
            self._data_keys.evict(lambda key: key in gone)
            self._ciphers.evict(lambda key: key in gone)
            self._current.evict(lambda key: key[0] == tenant_id and key[2] == owner)

        _now_and_at_commit(session, evict)
        return len(destroyed)


def _now_and_at_commit(session: AsyncSession, evict: Callable[[], None]) -> None:
    """Evict now, and again when `session`'s transaction commits: until then other
    requests of this process read the last committed rows and may cache the old state
    again, which would otherwise outlive the change by up to the cache's TTL."""
    evict()
    event.listen(session.sync_session, "after_commit", lambda _session: evict(), once=True)


def open_keystore_guarded(factory: Callable[[], Keystore]) -> Callable[[], Keystore]:
    """`factory`, with any unexpected failure reported as KeystoreUnavailable (503)."""

    def opened() -> Keystore:
        try:
            return factory()
        except KeystoreUnavailable:
            raise
        except (OSError, ValueError) as error:
            raise KeystoreUnavailable(str(error)) from error

    return opened
