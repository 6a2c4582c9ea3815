"""`Cache-Control: no-store` on the responses that show a secret once."""

from __future__ import annotations

from starlette.responses import Response

__all__ = ["no_store"]


def no_store(response: Response) -> None:
    """A route dependency for a response that shows a secret (a new API key or webhook
    secret, a one-time password, a TOTP seed, recovery codes, session tokens): RFC 9111's
    `no-store` tells every cache not to keep it, and the idempotency layer keeps the fact
    that the request ran, not the response (a retry gets 409
    `idempotency_response_withheld`)."""
    response.headers["Cache-Control"] = "no-store"
