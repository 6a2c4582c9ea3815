"""The byte formats an outside verifier needs: audit entries and signed checkpoints.

**Entry** (``ENTRY_DOMAIN`` then the fields in this order; integers big-endian)::

    "billfold.audit.entry.v1" 0x00      domain separation (24 bytes)
    id               16 bytes           the entry's UUID
    chain_id         16 bytes           the tenant's UUID, or 16 zero bytes (platform chain)
    sequence          8 bytes unsigned  1, 2, 3, ... within the chain
    previous_hash    32 bytes           entry_hash of sequence - 1; 32 zero bytes for 1
    occurred_at       8 bytes unsigned  ns since the Unix epoch
    tenant_id        optional 16 bytes
    actor_type, actor_id, action, target, source_ip, user_agent,
    before, after, detail               optional UTF-8 text each

An *optional* field is ``0x00`` when absent, else ``0x01``, a 4-byte length and the bytes.
``before``, ``after`` and ``detail`` are JSON text exactly as stored (hashed as bytes, so a
verifier never re-serialises JSON). ``entry_hash = SHA-256(encoding)``; the Merkle leaf of
an entry is ``SHA-256(0x00 || entry_hash)`` (RFC 9162 leaf hash of the 32-byte entry hash).

**Checkpoint message** (what is signed with Ed25519, RFC 8032): ASCII lines, each ending
in ``\\n``, exactly::

    billfold.audit.checkpoint.v1
    chain <chain_id, 32 lowercase hex>
    number <checkpoint number, decimal, 1, 2, ...>
    first <first sequence covered, decimal>
    last <last sequence covered, decimal>
    root <Merkle root over the covered entries' leaves, 64 lowercase hex>
    head <entry_hash of entry `last`, 64 lowercase hex>
    previous <checkpoint_hash of checkpoint number - 1, or 64 zeros, lowercase hex>
    time <creation time, ns since the epoch, decimal>
    key <key id>

``checkpoint_hash = SHA-256(message)``. Decimals have no sign and no leading zeros.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid
from dataclasses import dataclass

from billfold.kit.errors import invariant

__all__ = [
    "CHECKPOINT_DOMAIN",
    "ENTRY_DOMAIN",
    "PLATFORM_CHAIN_ID",
    "TEXT_LENGTH_MAX",
    "ZERO_HASH",
    "CheckpointFields",
    "EntryFields",
    "MalformedEncodingError",
    "checkpoint_hash",
    "checkpoint_message",
    "decode_entry",
    "encode_entry",
    "entry_hash",
    "parse_checkpoint_message",
]

ENTRY_DOMAIN = b"billfold.audit.entry.v1\x00"
CHECKPOINT_DOMAIN = "billfold.audit.checkpoint.v1"
PLATFORM_CHAIN_ID = uuid.UUID(int=0)
"""The chain of events with no tenant (platform-level)."""
ZERO_HASH = bytes(32)
TEXT_LENGTH_MAX = 1 << 20
"""Bytes of one text field, at most (the schema bounds each far lower)."""
_U64_MAX = (1 << 64) - 1
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}", re.ASCII)
_DECIMAL = r"(0|[1-9][0-9]{0,19})"
_HEX32 = r"([0-9a-f]{32})"
_HEX64 = r"([0-9a-f]{64})"
_CHECKPOINT = re.compile(
    rf"{re.escape(CHECKPOINT_DOMAIN)}\n"
    rf"chain {_HEX32}\nnumber {_DECIMAL}\nfirst {_DECIMAL}\nlast {_DECIMAL}\n"
    rf"root {_HEX64}\nhead {_HEX64}\nprevious {_HEX64}\ntime {_DECIMAL}\n"
    r"key ([A-Za-z0-9._:-]{1,64})\n",
    re.ASCII,
)


class MalformedEncodingError(ValueError):
    """Bytes that are not an encoding this module produces."""


@dataclass(frozen=True, slots=True)
class EntryFields:
    """Everything an entry's hash covers."""

    id: uuid.UUID
    chain_id: uuid.UUID
    sequence: int
    previous_hash: bytes
    occurred_at: int
    tenant_id: uuid.UUID | None
    actor_type: str | None
    actor_id: str | None
    action: str | None
    target: str | None
    source_ip: str | None
    user_agent: str | None
    before: str | None
    after: str | None
    detail: str | None

    def texts(self) -> tuple[str | None, ...]:
        return (
            self.actor_type,
            self.actor_id,
            self.action,
            self.target,
            self.source_ip,
            self.user_agent,
            self.before,
            self.after,
            self.detail,
        )


def _optional(value: bytes | None) -> bytes:
    if value is None:
        return b"\x00"
    invariant(len(value) <= TEXT_LENGTH_MAX, "an audit field is bounded")
    return b"\x01" + struct.pack(">I", len(value)) + value


def encode_entry(fields: EntryFields) -> bytes:
    """The canonical bytes of an entry (module docstring)."""
    invariant(1 <= fields.sequence <= _U64_MAX, "a sequence is a positive u64")
    invariant(0 <= fields.occurred_at <= _U64_MAX, "a time is a u64")
    invariant(len(fields.previous_hash) == 32, "a hash is 32 bytes")
    parts = [
        ENTRY_DOMAIN,
        fields.id.bytes,
        fields.chain_id.bytes,
        struct.pack(">Q", fields.sequence),
        fields.previous_hash,
        struct.pack(">Q", fields.occurred_at),
        _optional(None if fields.tenant_id is None else fields.tenant_id.bytes),
    ]
    parts.extend(_optional(None if text is None else text.encode()) for text in fields.texts())
    return b"".join(parts)


def entry_hash(fields: EntryFields) -> bytes:
    return hashlib.sha256(encode_entry(fields)).digest()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise MalformedEncodingError("truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def optional(self) -> bytes | None:
        flag = self.take(1)
        if flag == b"\x00":
            return None
        if flag != b"\x01":
            raise MalformedEncodingError("an optional field starts with 0x00 or 0x01")
        (length,) = struct.unpack(">I", self.take(4))
        if length > TEXT_LENGTH_MAX:
            raise MalformedEncodingError("field too long")
        return self.take(length)

    def text(self) -> str | None:
        raw = self.optional()
        if raw is None:
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError as error:
            raise MalformedEncodingError("text is UTF-8") from error

    def finish(self) -> None:
        if self._at != len(self._data):
            raise MalformedEncodingError("trailing bytes")


def decode_entry(data: bytes) -> EntryFields:
    """The fields of an encoded entry; the inverse of :func:`encode_entry`."""
    reader = _Reader(data)
    if reader.take(len(ENTRY_DOMAIN)) != ENTRY_DOMAIN:
        raise MalformedEncodingError("not an audit entry v1")
    entry_id = uuid.UUID(bytes=reader.take(16))
    chain_id = uuid.UUID(bytes=reader.take(16))
    (sequence,) = struct.unpack(">Q", reader.take(8))
    previous = reader.take(32)
    (occurred_at,) = struct.unpack(">Q", reader.take(8))
    tenant_raw = reader.optional()
    if tenant_raw is not None and len(tenant_raw) != 16:
        raise MalformedEncodingError("a tenant id is 16 bytes")
    texts = [reader.text() for _ in range(9)]
    reader.finish()
    if sequence == 0:
        raise MalformedEncodingError("sequences start at 1")
    return EntryFields(
        id=entry_id,
        chain_id=chain_id,
        sequence=sequence,
        previous_hash=previous,
        occurred_at=occurred_at,
        tenant_id=None if tenant_raw is None else uuid.UUID(bytes=tenant_raw),
        actor_type=texts[0],
        actor_id=texts[1],
        action=texts[2],
        target=texts[3],
        source_ip=texts[4],
        user_agent=texts[5],
        before=texts[6],
        after=texts[7],
        detail=texts[8],
    )


@dataclass(frozen=True, slots=True)
class CheckpointFields:
    """Everything a checkpoint's signature covers."""

    chain_id: uuid.UUID
    number: int
    first_sequence: int
    last_sequence: int
    root_hash: bytes
    head_hash: bytes
    previous_hash: bytes
    created_at: int
    key_id: str


def checkpoint_message(fields: CheckpointFields) -> bytes:
    """The exact bytes a checkpoint's Ed25519 signature covers (module docstring)."""
    invariant(_KEY_ID.fullmatch(fields.key_id) is not None, "a key id is short plain ASCII")
    invariant(1 <= fields.first_sequence <= fields.last_sequence <= _U64_MAX, "a range")
    invariant(1 <= fields.number <= _U64_MAX and 0 <= fields.created_at <= _U64_MAX, "u64s")
    for value in (fields.root_hash, fields.head_hash, fields.previous_hash):
        invariant(len(value) == 32, "a hash is 32 bytes")
    lines = [
        CHECKPOINT_DOMAIN,
        f"chain {fields.chain_id.hex}",
        f"number {fields.number}",
        f"first {fields.first_sequence}",
        f"last {fields.last_sequence}",
        f"root {fields.root_hash.hex()}",
        f"head {fields.head_hash.hex()}",
        f"previous {fields.previous_hash.hex()}",
        f"time {fields.created_at}",
        f"key {fields.key_id}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def checkpoint_hash(fields: CheckpointFields) -> bytes:
    return hashlib.sha256(checkpoint_message(fields)).digest()


def parse_checkpoint_message(message: bytes) -> CheckpointFields:
    """The fields of a checkpoint message; refuses anything but the exact canonical text."""
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError as error:
        raise MalformedEncodingError("a checkpoint is ASCII") from error
    match = _CHECKPOINT.fullmatch(text)
    if match is None:
        raise MalformedEncodingError("not a billfold.audit.checkpoint.v1 message")
    chain, number, first, last, root, head, previous, time, key = match.groups()
    numbers = [int(number), int(first), int(last), int(time)]
    if any(value > _U64_MAX for value in numbers) or not 1 <= numbers[1] <= numbers[2]:
        raise MalformedEncodingError("numbers out of range")
    if numbers[0] == 0:
        raise MalformedEncodingError("checkpoints are numbered from 1")
    return CheckpointFields(
        chain_id=uuid.UUID(hex=chain),
        number=numbers[0],
        first_sequence=numbers[1],
        last_sequence=numbers[2],
        root_hash=bytes.fromhex(root),
        head_hash=bytes.fromhex(head),
        previous_hash=bytes.fromhex(previous),
        created_at=numbers[3],
        key_id=key,
    )
