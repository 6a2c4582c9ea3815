"""Model states at rest: a pickle of the learner, with a digest checked before loading.

**A state is only ever loaded from Billfold's own database**, never from a file or a
request: unpickling runs code, so whoever can write the `state` column could otherwise run
code in every API process. Two guards stand in the way:

1. the digest: ``hmac-sha256:<hex>`` under `risk_models_signing_key` (or a key derived from
   the master key) when one is configured — a database writer without the key cannot forge
   a state; otherwise a plain ``sha256:<hex>`` checksum, which catches corruption but not
   tampering. A state whose digest kind does not match the configuration is refused, so
   configuring a key later invalidates unsigned states (train again).
2. a restricted unpickler: only classes from river, numpy, this package and a few harmless
   builtins may be named by the pickle.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import pickle
from typing import Final

from billfold.kit.errors import invariant
from billfold.risk.scoring.learners import AnomalyModel, Learner, SupervisedModel

__all__ = ["STATE_BYTES_MAX", "StateCodec", "UnusableStateError", "derive_signing_key"]

STATE_BYTES_MAX: Final = 16 * 1024 * 1024
"""A stored state larger than this is refused (a HalfSpaceTrees of 10 trees is ~170 KB)."""
_ALLOWED_MODULE_PREFIXES: Final = ("river.", "numpy.", "billfold.risk.scoring.")
_ALLOWED_EXACT: Final = frozenset(
    {
        ("builtins", name)
        for name in (
            "dict",
            "list",
            "set",
            "frozenset",
            "tuple",
            "float",
            "int",
            "bool",
            "complex",
            "bytes",
            "bytearray",
            "str",
            "slice",
            "range",
            "object",
        )
    }
    | {
        ("collections", "defaultdict"),
        ("collections", "deque"),
        ("collections", "OrderedDict"),
        ("collections", "Counter"),
        ("functools", "partial"),
        ("random", "Random"),
        ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"),
        ("_codecs", "encode"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("river", "optim"),
    }
)


class UnusableStateError(Exception):
    """A stored state failed its digest or names a class it may not (a programming or
    operating problem: the version is skipped and logged, never loaded)."""


def derive_signing_key(secret: bytes) -> bytes:
    """The model-state key derived from another secret (the master key)."""
    return hmac.new(secret, b"billfold.risk.scoring.state.v1", hashlib.sha256).digest()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_EXACT or module.startswith(_ALLOWED_MODULE_PREFIXES):
            return super().find_class(module, name)
        raise UnusableStateError(f"a model state may not name {module}.{name}")


class StateCodec:
    """Dumps and loads learners with their digest (see the module docstring)."""

    def __init__(self, signing_key: bytes | None) -> None:
        invariant(signing_key is None or len(signing_key) >= 32, "a 32-byte signing key")
        self._key = signing_key

    @property
    def signed(self) -> bool:
        return self._key is not None

    def digest(self, state: bytes) -> str:
        if self._key is None:
            return "sha256:" + hashlib.sha256(state).hexdigest()
        return "hmac-sha256:" + hmac.new(self._key, state, hashlib.sha256).hexdigest()

    def dump(self, learner: Learner) -> tuple[bytes, str]:
        state = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        invariant(len(state) <= STATE_BYTES_MAX, "a model state fits STATE_BYTES_MAX")
        return state, self.digest(state)

    def load(self, state: bytes, digest: str) -> Learner:
        if len(state) > STATE_BYTES_MAX:
            raise UnusableStateError("the state is larger than STATE_BYTES_MAX")
        if not hmac.compare_digest(self.digest(state), digest):
            raise UnusableStateError("the state does not match its digest")
        try:
            learner = _RestrictedUnpickler(io.BytesIO(state)).load()
        except UnusableStateError:
            raise
        except Exception as error:  # a corrupt or foreign pickle: refused, not a crash
            raise UnusableStateError(f"the state does not load: {error}") from error
        if not isinstance(learner, SupervisedModel | AnomalyModel):
            raise UnusableStateError("the state is not a model")
        return learner
