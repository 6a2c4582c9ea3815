"""Merkle trees as RFC 6962 / RFC 9162 section 2.1 define them, over SHA-256.

- leaf hash: ``SHA-256(0x00 || leaf data)``; interior node: ``SHA-256(0x01 || left || right)``;
- ``MTH`` of ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n``;
  the empty tree's hash is ``SHA-256()`` of nothing;
- an inclusion proof is RFC 9162 section 2.1.3.1's ``PATH(m, D[n])``, verified by the
  algorithm of section 2.1.3.2 (:func:`root_from_inclusion_proof`).

Pure functions: no I/O, so the same code serves the service and any outside verifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from billfold.kit.errors import invariant

__all__ = [
    "HASH_SIZE",
    "PROOF_LENGTH_MAX",
    "RootBuilder",
    "empty_root",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "tree_root",
    "verify_inclusion",
]

HASH_SIZE = 32
PROOF_LENGTH_MAX = 64
"""A tree of at most 2^64 leaves has proofs of at most 64 hashes."""
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def empty_root() -> bytes:
    return hashlib.sha256(b"").digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size > 1``)."""
    return 1 << ((size - 1).bit_length() - 1)


def tree_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already leaf-hashed entries, by the recursive definition."""
    if not leaf_hashes:
        return empty_root()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = _split(len(leaf_hashes))
    return node_hash(tree_root(leaf_hashes[:k]), tree_root(leaf_hashes[k:]))


class RootBuilder:
    """MTH computed while leaves stream past, in O(log n) memory: a stack of the perfect
    subtrees so far (a compact range), folded right to left at the end, which is exactly
    how the recursive definition pairs the last, smaller subtrees."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights decreasing
        self.size = 0

    def add(self, leaf: bytes) -> None:
        invariant(len(leaf) == HASH_SIZE, "a leaf hash is 32 bytes")
        height, current = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            current = node_hash(left, current)
            height += 1
        self._stack.append((height, current))
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.add(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return empty_root()
        current = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            current = node_hash(left, current)
        return current


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """``PATH(index, D[n])``: the sibling hashes from the leaf up to the root."""
    invariant(0 <= index < len(leaf_hashes), "the leaf is in the tree")
    if len(leaf_hashes) == 1:
        return []
    k = _split(len(leaf_hashes))
    if index < k:
        return [*inclusion_proof(leaf_hashes[:k], index), tree_root(leaf_hashes[k:])]
    return [*inclusion_proof(leaf_hashes[k:], index - k), tree_root(leaf_hashes[:k])]


def root_from_inclusion_proof(
    *, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 section 2.1.3.2: the root the proof leads to, or None when the proof cannot
    belong to a leaf at ``index`` of a tree of ``tree_size`` (wrong length, bad index)."""
    if not 0 <= index < tree_size or len(proof) > PROOF_LENGTH_MAX:
        return None
    if len(leaf) != HASH_SIZE or any(len(step) != HASH_SIZE for step in proof):
        return None
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_inclusion(
    *, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows ``leaf`` at ``index`` in the tree of ``tree_size`` with ``root``."""
    computed = root_from_inclusion_proof(leaf=leaf, index=index, tree_size=tree_size, proof=proof)
    return computed is not None and computed == root
