"""The three credentials: an API key, an operator session, an end user's token pair.

The end user's access token lives 15 minutes; the refresh token is single use and each
refresh returns a new pair. `UserTokens` refreshes before the access token expires (by the
injected clock) and once more if the server refuses it anyway, under a lock, so threads
sharing a client never spend the same refresh token twice (which the server would treat as
theft, ending the session).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from billfold.client.errors import (
    ApiError,
    NotSignedInError,
    RefreshTokenInvalidError,
    TransportError,
)
from billfold.client.types import Tokens

__all__ = [
    "REFRESH_MARGIN_S",
    "ApiKeyCredential",
    "OperatorCredential",
    "UserTokens",
]

REFRESH_MARGIN_S = 30.0
"""Refresh this long before the access token's expiry, so a request never carries one that
expires in flight."""
_REFUSED_ACCESS_CODE = "unauthorized"  # the one problem code a stale access token gets


def _bearer(token: str) -> str:
    return f"Bearer {token}"


class ApiKeyCredential:
    """A tenant backend's API key (`bf_test_…` or `bf_live_…`)."""

    def __init__(self, api_key: str) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._header = _bearer(api_key)

    def authorization(self) -> str | None:
        return self._header

    def renew_after(self, error: ApiError, *, presented: str | None) -> bool:
        return False


class OperatorCredential:
    """An operator's session token (`bfo_…`), set by logging in."""

    def __init__(self) -> None:
        self.token: str | None = None

    def authorization(self) -> str | None:
        if self.token is None:
            raise NotSignedInError("Log in first (BillfoldOperator.log_in).")
        return _bearer(self.token)

    def renew_after(self, error: ApiError, *, presented: str | None) -> bool:
        return False  # a session is not renewed: an operator logs in again


class UserTokens:
    """An end user's rotating token pair, refreshed transparently and thread-safely."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        on_tokens: Callable[[Tokens], None] | None = None,
        refresh_margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self._clock = clock
        self._on_tokens = on_tokens
        self._refresh_margin_s = refresh_margin_s
        self._lock = threading.Lock()
        self._tokens: Tokens | None = None
        self._access_expires_at_s = 0.0
        self.refresher: Callable[[str], Tokens] | None = None
        """Spends a refresh token for a new pair (set by the client that owns this)."""

    @property
    def tokens(self) -> Tokens | None:
        with self._lock:
            return self._tokens

    def set(self, tokens: Tokens | None, *, notify: bool = True) -> None:
        with self._lock:
            self._store(tokens, notify=notify)

    def authorization(self) -> str | None:
        with self._lock:
            if self._tokens is None:
                raise NotSignedInError("Sign in first (BillfoldUser.sign_in).")
            if self._clock() >= self._access_expires_at_s - self._refresh_margin_s:
                self._refresh()
            assert self._tokens is not None  # _refresh stores a pair or raises
            return _bearer(self._tokens["access_token"])

    def renew_after(self, error: ApiError, *, presented: str | None) -> bool:
        if error.code != _REFUSED_ACCESS_CODE:
            return False  # a wrong password or signature is not cured by a new token
        with self._lock:
            if self._tokens is None or presented is None:
                return False
            if _bearer(self._tokens["access_token"]) != presented:
                return True  # another thread refreshed meanwhile: retry with its token
            self._refresh()
            return True

    def refresh_now(self) -> Tokens:
        """Spend the refresh token now, whatever the access token's expiry."""
        with self._lock:
            self._refresh()
            assert self._tokens is not None
            return self._tokens

    def _refresh(self) -> None:
        """Called with the lock held."""
        if self._tokens is None or self.refresher is None:
            raise NotSignedInError("Sign in first (BillfoldUser.sign_in).")
        try:
            fresh = self.refresher(self._tokens["refresh_token"])
        except RefreshTokenInvalidError:
            self._store(None)  # the session is over; keeping the token would only fail again
            raise
        except TransportError:
            raise  # the refresh token may or may not be spent; the next call finds out
        self._store(fresh)

    def _store(self, tokens: Tokens | None, *, notify: bool = True) -> None:
        self._tokens = tokens
        self._access_expires_at_s = (
            0.0 if tokens is None else _epoch_s(tokens["access_token_expires_at"])
        )
        if notify and tokens is not None and self._on_tokens is not None:
            self._on_tokens(tokens)


def _epoch_s(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as the API writes it."""
    return datetime.fromisoformat(text).timestamp()
