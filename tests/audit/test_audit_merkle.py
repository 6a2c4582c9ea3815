"""RFC 6962 / RFC 9162 Merkle trees: the published Certificate Transparency vectors, and
inclusion proofs that verify for every leaf and fail for a wrong leaf, index or size."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billfold.audit import merkle

# The reference vectors of Certificate Transparency's Merkle tree tests (RFC 6962 section
# 2.1), used by certificate-transparency, Trillian and C2SP/CCTV: leaf inputs, and MTH of
# the first n of them for n = 0..8.
LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Inclusion proofs from the same test suite: (0-based leaf index, tree size, path).
PROOFS = [
    (0, 1, []),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
]

LEAVES = [merkle.leaf_hash(bytes.fromhex(data)) for data in LEAF_INPUTS]


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_the_published_vectors(size: int) -> None:
    assert merkle.tree_root(LEAVES[:size]).hex() == ROOTS[size]
    builder = merkle.RootBuilder()
    builder.extend(LEAVES[:size])
    assert builder.root().hex() == ROOTS[size]
    assert builder.size == size


@pytest.mark.parametrize(("index", "size", "path"), PROOFS)
def test_inclusion_proofs_match_the_published_vectors(
    index: int, size: int, path: list[str]
) -> None:
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    assert [step.hex() for step in proof] == path
    root = bytes.fromhex(ROOTS[size])
    assert merkle.verify_inclusion(
        leaf=LEAVES[index], index=index, tree_size=size, proof=proof, root=root
    )


def test_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert merkle.empty_root() == hashlib.sha256(b"").digest()


def _leaves(count: int, salt: int) -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}:{index}".encode()) for index in range(count)]


@given(size=st.integers(min_value=1, max_value=70), salt=st.integers(0, 2**32), data=st.data())
def test_every_leaf_of_a_random_tree_verifies(size: int, salt: int, data: st.DataObject) -> None:
    leaves = _leaves(size, salt)
    root = merkle.tree_root(leaves)
    builder = merkle.RootBuilder()
    builder.extend(leaves)
    assert builder.root() == root
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(leaves, index)
    assert merkle.verify_inclusion(
        leaf=leaves[index], index=index, tree_size=size, proof=proof, root=root
    )


@given(size=st.integers(min_value=2, max_value=70), salt=st.integers(0, 2**32), data=st.data())
def test_a_wrong_leaf_or_index_fails(size: int, salt: int, data: st.DataObject) -> None:
    leaves = _leaves(size, salt)
    root = merkle.tree_root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(leaves, index)
    other = data.draw(st.integers(0, size - 1).filter(lambda value: value != index))
    assert not merkle.verify_inclusion(
        leaf=leaves[other], index=index, tree_size=size, proof=proof, root=root
    )
    assert not merkle.verify_inclusion(
        leaf=leaves[index], index=other, tree_size=size, proof=proof, root=root
    )
    # (A wrong tree size can still lead to the same root when the path has the same shape:
    # RFC 9162 binds the size through the signed tree head, here the signed checkpoint.)
    assert not merkle.verify_inclusion(
        leaf=leaves[index], index=index, tree_size=index, proof=proof, root=root
    )
    if proof:
        flipped = bytearray(proof[0])
        flipped[0] ^= 1
        tampered = [bytes(flipped), *proof[1:]]
        assert not merkle.verify_inclusion(
            leaf=leaves[index], index=index, tree_size=size, proof=tampered, root=root
        )


@given(
    index=st.integers(-5, 200),
    size=st.integers(-5, 200),
    proof=st.lists(st.binary(min_size=0, max_size=40), max_size=10),
    leaf=st.binary(min_size=0, max_size=40),
)
def test_arbitrary_proofs_never_crash(
    index: int, size: int, proof: list[bytes], leaf: bytes
) -> None:
    root = merkle.root_from_inclusion_proof(leaf=leaf, index=index, tree_size=size, proof=proof)
    assert root is None or len(root) == merkle.HASH_SIZE


def test_a_proof_longer_than_any_tree_is_refused() -> None:
    leaf = LEAVES[0]
    proof = [leaf] * (merkle.PROOF_LENGTH_MAX + 1)
    assert (
        merkle.root_from_inclusion_proof(leaf=leaf, index=0, tree_size=2**64, proof=proof) is None
    )
