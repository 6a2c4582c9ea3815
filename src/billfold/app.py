"""The FastAPI application factory: mounts each domain's router, middleware and lifespan.

Middleware, outermost first: request id, access log, body size limit (larger on the batch
route), idempotency keys. Authentication is identity's `authenticate`, installed behind
`kit.auth.require_scopes`, and rate limits count per API key (Redis when configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from billfold import __version__
from billfold.audit.audit import AuditService
from billfold.audit.context import AuditSourceMiddleware
from billfold.audit.router import router as audit_router
from billfold.events.inbound import InboundRegistry
from billfold.events.router import router as events_router
from billfold.flows.approvals import approval_executors
from billfold.flows.held_movements import PaymentsHeldResolver
from billfold.flows.recovery_loops import running_recovery
from billfold.flows.risk_cases import enforce_responses
from billfold.fx.router import install_fx
from billfold.fx.router import router as fx_router
from billfold.identity.auth import authenticate
from billfold.identity.operators.audit_routes import router as operator_audit_router
from billfold.identity.operators.auth import operator_idempotency_scope
from billfold.identity.operators.router import router as operators_router
from billfold.identity.router import router as identity_router
from billfold.identity.users.auth import user_idempotency_scope
from billfold.identity.users.router import router as users_router
from billfold.keys.config import keyring_from_settings, keystore_configured
from billfold.keys.fingerprint_key import FingerprintKey
from billfold.keys.router import router as keys_router
from billfold.keys.signing import HierarchySigningKeys
from billfold.kit.auth import (
    CredentialRateLimit,
    admit_request,
    install_auth,
    install_rate_limit,
)
from billfold.kit.bearer import bearer_token
from billfold.kit.collector import tuned_garbage_collection
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import ServiceUnavailable, Unauthorized, install_problem_handlers
from billfold.kit.http.bodies import StrictJsonMiddleware
from billfold.kit.http.idempotency import IdempotencyMiddleware
from billfold.kit.http.idempotency_batching import BatchingIdempotencyStore
from billfold.kit.http.idempotency_store import IdempotencyStore
from billfold.kit.http.limits import BodySizeLimitMiddleware
from billfold.kit.http.logging import AccessLogMiddleware, configure_logging
from billfold.kit.http.methods import install_methods
from billfold.kit.http.openapi import install_error_documentation
from billfold.kit.http.query import UnknownQueryParameterMiddleware
from billfold.kit.http.rate_limit import InProcessRateLimiter, RateLimiter
from billfold.kit.http.rate_limit_redis import RateLimiterUnavailable, RedisRateLimiter
from billfold.kit.http.request_id import RequestIdMiddleware
from billfold.kit.http.route_index import install_route_index
from billfold.kit.settings import Settings, get_settings
from billfold.ledger.ledger import Ledger
from billfold.ledger.router import TRANSFER_BATCH_PATH
from billfold.ledger.router import router as ledger_router
from billfold.migrations import require_migrated, upgrade
from billfold.payments.fees.router import router as fees_router
from billfold.payments.flows.notifications import register_notification_handlers
from billfold.payments.router import router as payments_router
from billfold.payments.runtime import close_payments, install_payments
from billfold.privacy.masking import mask_pii_processor
from billfold.privacy.router import router as privacy_router
from billfold.risk.cases.router import router as risk_cases_router
from billfold.risk.features.router import router as risk_profiles_router
from billfold.risk.features.service import feature_source_from_settings
from billfold.risk.labels_router import router as risk_labels_router
from billfold.risk.router import install_risk
from billfold.risk.router import router as risk_router
from billfold.risk.scoring.registry import model_registry_from_settings
from billfold.risk.scoring.router import router as risk_models_router
from billfold.wallets.router import router as wallets_router
from billfold.worker import purge_idempotency_keys, running_worker

__all__ = ["PATH_ID_PREFIXES", "create_app"]

READY_TIMEOUT_S = 2.0

PATH_ID_PREFIXES: Mapping[str, str] = {
    "account_id": "acc",
    "api_key_id": "key",
    "approval_id": "apr",
    "case_id": "rcs",
    "checkpoint_id": "ckp",
    "decision_id": "rdc",
    "device_id": "dev",
    "dispute_id": "dsp",
    "endpoint_id": "whe",
    "entry_id": "aud",
    "event_id": "evt",
    "merchant_id": "mer",
    "model_id": "rmv",
    "operator_id": "opr",
    "payment_id": "pay",
    "quote_id": "fxq",
    "request_id": "req",
    "response_id": "rrs",
    "rule_id": "rrl",
    "schedule_id": "fsc",
    "session_id": "ses",
    "step_up_id": "stp",
    "transfer_id": "txf",
    "user_id": "usr",
}
"""The id prefix of every `{…_id}` path parameter, by name, for the OpenAPI document
(`document_path_ids`): each name means one kind of id on every route that has it.
`tests/test_openapi_path_ids.py` checks it against what each route parses."""

log = structlog.get_logger(__name__)


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    database: str


class _BodySizeLimitByPath:
    """`BodySizeLimitMiddleware` with a larger limit on a few routes (the batch ones)."""

    def __init__(self, app: ASGIApp, *, body_max_bytes: int, larger: Mapping[str, int]) -> None:
        self._default = BodySizeLimitMiddleware(app, body_max_bytes=body_max_bytes)
        self._larger = {
            path: BodySizeLimitMiddleware(app, body_max_bytes=size) for path, size in larger.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._larger.get(scope.get("path", "")) if scope["type"] == "http" else None
        await (chosen or self._default)(scope, receive, send)


async def _idempotency_scope(connection: HTTPConnection) -> str | None:
    """Whose idempotency keys a request uses: a SHA-256 of its Authorization header, so
    keys are per credential and nobody can reach another's without its secret.

    The caller is admitted (authenticated, rate-limited) first, so a request that will be
    refused anyway writes nothing: it passes through and the route answers 401."""
    values = connection.headers.getlist("authorization")
    if len(values) != 1:
        return None
    request = Request(connection.scope)
    try:
        await admit_request(request)
    except Unauthorized:
        # Not an API key: an end user's access token keys per user (tokens rotate), an
        # operator's session per operator.
        return await user_idempotency_scope(request) or await operator_idempotency_scope(request)
    # Per credential, not per spelling: the scheme is case-insensitive (RFC 9110 section
    # 11.1) and any number of spaces may follow it (RFC 6750), so `bearer …`, `BEARER …`
    # and `Bearer  …` are the same key's; the canonical form hashes as the header always did.
    token = bearer_token(values)
    if token is None:  # admitted, so it was a bearer token
        return None
    return hashlib.sha256(f"Bearer {token}".encode("latin-1")).hexdigest()


def _idempotency_store(connection: HTTPConnection) -> IdempotencyStore:
    store: IdempotencyStore = connection.app.state.idempotency
    return store


async def _idempotency_fingerprint_key(connection: HTTPConnection) -> bytes | None:
    key: FingerprintKey = connection.app.state.fingerprint_key
    return await key.get()


class _RedisScripts:
    """redis-py's `eval`, with Redis being unreachable turned into a 503 problem."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def eval(self, script: str, numkeys: int, *keys_and_args: str) -> Any:
        from redis.exceptions import RedisError

        try:
            return await self._client.eval(script, numkeys, *keys_and_args)
        except RedisError as error:
            raise RateLimiterUnavailable("Redis does not answer.") from error


@asynccontextmanager
async def _rate_limiter(settings: Settings) -> AsyncIterator[RateLimiter]:
    """Redis when `redis_url` is set (shared by every process), in-process otherwise."""
    if settings.redis_url is None:
        yield InProcessRateLimiter(keys_max=settings.rate_limit_keys_max)
        return
    from redis.asyncio import Redis

    client = Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    try:
        yield RedisRateLimiter(_RedisScripts(client), timeout_s=settings.redis_timeout_s)
    finally:
        await client.aclose()


async def _purge_forever(
    purge: Callable[[], Awaitable[object]], *, interval_s: float, failure: str
) -> None:
    """Run `purge` every `interval_s`; a failure is logged as `failure` and retried."""
    while True:
        await asyncio.sleep(interval_s)  # nothing expires at startup: wait first
        try:
            await purge()
        except Exception:  # retried next interval; a crash would stop purging for good
            log.exception(failure)


@asynccontextmanager
async def _background(
    purge: Callable[[], Awaitable[object]], *, interval_s: float, failure: str
) -> AsyncIterator[None]:
    task = asyncio.create_task(_purge_forever(purge, interval_s=interval_s, failure=failure))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _enforce_responses(
    unit_of_work: UnitOfWork, ledger: Ledger, response_ids: Sequence[uuid.UUID]
) -> int:
    return await enforce_responses(unit_of_work, ledger, response_ids=response_ids)


@asynccontextmanager
async def _recovery(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The payments' and review cases' recovery loops, when this process runs the scheduled
    work (else `billfold worker` does)."""
    if not settings.embedded_worker:
        yield
        return
    async with running_recovery(
        unit_of_work=app.state.unit_of_work,
        ledger=app.state.ledger,
        payments=lambda: app.state.payments,
        resolver=lambda: getattr(app.state, "held_resolver", None),
        payments_interval_s=settings.payments_resume_interval_s,
        risk_cases_interval_s=settings.risk_cases_recovery_interval_s,
    ):
        yield


async def _open_stores(app: FastAPI, settings: Settings) -> tuple[AsyncEngine, Ledger]:
    """The database engine and unit of work, the idempotency store and the ledger."""
    if parse_database_url(settings.database_url).kind == "sqlite":
        # The embedded default sets itself up: first start creates and migrates the file.
        await asyncio.to_thread(upgrade, settings.database_url)
    engine = create_engine(
        parse_database_url(settings.database_url), pool_size=settings.database_pool_size
    )
    try:  # PostgreSQL is migrated by `billfold db upgrade`, before `serve`
        await require_migrated(engine)
    except BaseException:
        await engine.dispose()
        raise
    app.state.unit_of_work = UnitOfWork(engine)
    # The risk models the engine scores with (`RiskEngine(…, scorers=app.state.risk_models)`).
    app.state.risk_models = model_registry_from_settings(
        settings, unit_of_work=app.state.unit_of_work
    )
    app.state.idempotency = BatchingIdempotencyStore(
        app.state.unit_of_work,
        ttl_s=settings.idempotency_ttl_s,
        lease_s=settings.idempotency_lease_s,
        response_body_max_bytes=settings.idempotency_response_max_bytes,
    )
    ledger = Ledger.from_settings(settings)
    await ledger.open()
    if settings.embedded_worker:  # else `billfold worker` sweeps expiries
        ledger.start_expiry(interval_s=settings.ledger_expiry_interval_s)
    app.state.ledger = ledger
    # Four-eyes approvals of ledger actions execute through the ledger facade.
    app.state.approval_executors = approval_executors(
        ledger, app.state.keyring, app.state.unit_of_work
    )
    app.state.audit = AuditService(  # checkpoints signed by the platform's "audit" key
        app.state.unit_of_work,
        signing_keys=HierarchySigningKeys(app.state.keyring, purpose="audit"),
        checkpoint_entries_max=settings.audit_checkpoint_entries_max,
    )
    # The risk engine every money movement passes (payments read `app.state.risk`).
    app.state.risk = None
    if settings.risk_enabled:
        app.state.risk_features = feature_source_from_settings(settings, app.state.unit_of_work)
        install_risk(app, settings, source=app.state.risk_features, registry=app.state.risk_models)
    payments = install_payments(app, settings, ledger)  # wallets, providers and payment flows
    # Decided review cases post or void the payments' held money.
    app.state.held_resolver = PaymentsHeldResolver(payments)
    # A decision's `freeze_account` freezes the ledger accounts as soon as it commits.
    payments.enforce_responses = functools.partial(
        _enforce_responses, app.state.unit_of_work, ledger
    )
    app.state.inbound = InboundRegistry()  # what the worker applies: provider notifications
    register_notification_handlers(app.state.inbound, app.state.payments)
    return engine, ledger


@asynccontextmanager
async def _embedded_worker(app: FastAPI, settings: Settings, ledger: Ledger) -> AsyncIterator[None]:
    """The worker's loops in this process (`BILLFOLD_EMBEDDED_WORKER`, on by default), so
    `billfold serve` alone delivers events and runs the worker's purges (delivery log, risk
    velocity counters); the expiry and the idempotency purge run above."""
    if not settings.embedded_worker:
        yield
        return
    async with running_worker(
        settings,
        unit_of_work=app.state.unit_of_work,
        ledger=ledger,
        scheduled=False,
        keyring=app.state.keyring,
        inbound=app.state.inbound,
    ) as worker:
        app.state.worker = worker
        async with _background(
            worker.purge,  # logs each purge's failure itself
            interval_s=settings.idempotency_purge_interval_s,
            failure="worker.purge_failed",
        ):
            yield


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine, ledger = await _open_stores(app, settings)
        try:
            async with (
                _rate_limiter(settings) as limiter,
                _background(
                    functools.partial(purge_idempotency_keys, app.state.idempotency),
                    interval_s=settings.idempotency_purge_interval_s,
                    failure="idempotency.purge_failed",
                )
                if settings.embedded_worker
                else contextlib.nullcontext(),
                _embedded_worker(app, settings, ledger),
                _recovery(app, settings),
                app.state.audit.checkpointing(interval_s=settings.audit_checkpoint_interval_s),
                app.state.risk_models.running(),  # the drift check's loop
            ):
                policy = CredentialRateLimit(
                    limiter=limiter,
                    limit=settings.rate_limit_credential_requests,
                    window_s=settings.rate_limit_window_s,
                )
                sign_in = CredentialRateLimit(
                    limiter=limiter,
                    limit=settings.rate_limit_sign_in_requests,
                    window_s=settings.rate_limit_window_s,
                )
                install_rate_limit(app, policy, sign_in=sign_in)
                with tuned_garbage_collection(settings.gc_gen0_threshold):
                    yield
        finally:
            await close_payments(app)
            features = getattr(app.state, "risk_features", None)
            if features is not None:
                await features.aclose()
            await ledger.close()
            await engine.dispose()
            app.state.keyring.close()

    return lifespan


def _mount_middleware(app: FastAPI, settings: Settings) -> None:
    # Starlette makes the last added the outermost: this is the kit.http order, reversed.
    app.add_middleware(
        IdempotencyMiddleware,
        store=_idempotency_store,
        scope_of=_idempotency_scope,
        fingerprint_key=_idempotency_fingerprint_key,
        body_max_bytes=settings.request_body_batch_max_bytes,
    )
    app.add_middleware(UnknownQueryParameterMiddleware)  # outside idempotency: nothing kept
    app.add_middleware(StrictJsonMiddleware, body_max_bytes=settings.request_body_batch_max_bytes)
    app.add_middleware(
        _BodySizeLimitByPath,
        body_max_bytes=settings.request_body_max_bytes,
        larger={TRANSFER_BATCH_PATH: settings.request_body_batch_max_bytes},
    )
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AuditSourceMiddleware)  # where audited acts come from (client, agent)


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Billfold API application for `settings` (the environment's, by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, processors=[mask_pii_processor])
    app = FastAPI(
        title="Billfold",
        version=__version__,
        summary="Self-hostable digital wallet and payments platform.",
        lifespan=_lifespan(settings),
    )
    install_problem_handlers(app)
    app.state.keyring = keyring_from_settings(settings)  # the keystore opens on first use
    app.state.fingerprint_key = FingerprintKey(  # idempotency fingerprints are HMACs under it
        app.state.keyring, keystore_configured=keystore_configured(settings)
    )
    app.state.settings = settings
    install_auth(app, authenticator=authenticate)  # the rate limit: in the lifespan
    _mount_middleware(app, settings)
    app.include_router(identity_router)
    app.include_router(ledger_router)
    app.include_router(users_router)
    app.include_router(operators_router)
    app.include_router(fees_router)
    app.include_router(fx_router)
    install_fx(app, settings)
    app.include_router(keys_router)
    app.include_router(privacy_router)
    app.include_router(audit_router)
    app.include_router(operator_audit_router)
    app.include_router(events_router)
    app.include_router(wallets_router)
    app.include_router(payments_router)
    app.include_router(risk_router)
    app.include_router(risk_labels_router)
    app.include_router(risk_cases_router)
    app.include_router(risk_models_router)
    app.include_router(risk_profiles_router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers.")
    async def healthz() -> Health:
        return Health(status="ok", version=__version__)

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the database answers.",
        responses={503: {"description": "The database does not answer (problem+json)."}},
    )
    async def readyz(request: Request) -> Readiness:
        ledger: Ledger = request.app.state.ledger
        try:
            await asyncio.wait_for(ledger.repository.ping(), READY_TIMEOUT_S)
        except Exception as error:
            raise ServiceUnavailable(
                "the database does not answer", database=ledger.repository.backend
            ) from error
        return Readiness(status="ready", database=ledger.repository.backend)

    install_route_index(app)  # each request tries only the routes of its path's segment
    install_methods(app.router)  # HEAD wherever GET is; a 405 lists all the path's methods
    # every operation's errors, as problem+json, and the form of every id in a path
    install_error_documentation(app, path_ids=PATH_ID_PREFIXES)
    return app
