"""HTTP platform pieces with no domain knowledge: pure ASGI middleware and FastAPI helpers.

Each module is imported on its own (`from billfold.kit.http.request_id import ...`), so a
process that only needs the idempotency table does not import the web framework.

- `request_id`: `X-Request-Id` accepted or generated, echoed on every response.
- `logging`: structlog JSON logs, the access-log line, `bind_actor` for the auth layer.
- `limits`: the request body size limit (413).
- `bodies`: JSON bodies held to I-JSON; a route's credential checked before its body.
- `idempotency`, `idempotency_store`, `idempotency_models`: `Idempotency-Key` on POST, PUT,
  PATCH and DELETE;
  `idempotency_batching`: the store for a busy API (concurrent requests share transactions);
  `idempotency_sealing`: kept responses sealed under a key only their request gives.
- `rate_limit`, `rate_limit_redis`: limiters (in-process and Redis) and the 429 helper.
- `problems`: problem+json responses written from middleware.
- `query`: query parameters a route does not declare are refused (400).
- `methods`: HEAD, `Allow` on 405, and 501 for methods no route serves.

Middleware order, outermost first (Starlette's `add_middleware` makes the last added the
outermost, so add them in the reverse of this list)::

    RequestIdMiddleware       every response carries the id, even a crash's 500
    AccessLogMiddleware       logs with the request id already bound
    BodySizeLimitMiddleware   nothing inside reads more than the limit
    StrictJsonMiddleware      refuses what is not I-JSON, after the route's credential
    UnknownQueryParameterMiddleware  refuses undeclared query parameters, before any key
    IdempotencyMiddleware     buffers the (already bounded) body to fingerprint it
"""

from __future__ import annotations

__all__: list[str] = []
