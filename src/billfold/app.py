"""The FastAPI application factory: mounts each domain's router, middleware and lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from pydantic import BaseModel

from billfold import __version__
from billfold.identity.router import router as identity_router
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.errors import ServiceUnavailable, install_problem_handlers
from billfold.kit.settings import Settings, get_settings
from billfold.ledger.ledger import Ledger
from billfold.migrations import upgrade

__all__ = ["create_app"]

READY_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: str
    version: str


class Readiness(BaseModel):
    status: str
    database: str


def create_app(settings: Settings | None = None) -> FastAPI:
    """A Billfold API application for `settings` (the environment's, by default)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if parse_database_url(settings.database_url).kind == "sqlite":
            # The embedded default sets itself up: first start creates and migrates the file.
            await asyncio.to_thread(upgrade, settings.database_url)
        engine = create_engine(
            parse_database_url(settings.database_url), pool_size=settings.database_pool_size
        )
        app.state.unit_of_work = UnitOfWork(engine)
        ledger = Ledger.from_settings(settings)
        await ledger.open()
        ledger.start_expiry(interval_s=settings.ledger_expiry_interval_s)
        app.state.ledger = ledger
        try:
            yield
        finally:
            await ledger.close()
            await engine.dispose()

    app = FastAPI(
        title="Billfold",
        version=__version__,
        summary="Self-hostable digital wallet and payments platform.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(identity_router)

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

    return app
