"""Test harness: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is the local server (`BILLFOLD_TEST_POSTGRES_URL`, default: the Unix socket as
`postgres`). The session migrates one template database, gives the tests a fresh database
made from it, and drops both at the end. When PostgreSQL cannot be reached the PostgreSQL
variants are skipped, except under `CI=true`, where that fails the run.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import asyncpg
import pytest
import structlog
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings
from starlette.routing import BaseRoute

import billfold.app
from billfold.kit.http.route_index import inclusion
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.migrations import upgrade

# The worker's loops poll the database several times a second; on SQLite every poll takes
# the one write lock. Applications built by tests run without them unless a test asks
# (the events tests do), so lock waits do not slow and entangle unrelated tests.
os.environ.setdefault("BILLFOLD_EMBEDDED_WORKER", "false")

# Hypothesis fails an example that takes over 200 ms by default: a wall-clock assertion,
# which a loaded two-core CI machine trips on examples that are fast alone (an envelope
# property test failed so while another suite ran beside it). Tests assert behaviour, not
# speed: no deadline, for every property test.
hypothesis_settings.register_profile("billfold", deadline=None)
hypothesis_settings.load_profile("billfold")


def _routes_signature(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[object]:
    """What of `routes` makes the OpenAPI document: each route's kind, path, methods and
    endpoint, and the routers included with their prefixes and tags."""
    for route in routes:
        included = inclusion(route)
        if included is not None:
            under = prefix + included.prefix
            yield ("router", id(included.router), under, included.tags)
            yield from _routes_signature(included.routes, under)
            continue
        endpoint = getattr(route, "endpoint", None)
        yield (
            type(route).__name__,
            prefix + str(getattr(route, "path", "")),
            tuple(sorted(getattr(route, "methods", None) or ())),
            getattr(endpoint, "__module__", None),
            getattr(endpoint, "__qualname__", None),
            getattr(route, "include_in_schema", True),
        )


_documents: dict[tuple[object, ...], dict[str, object]] = {}
_install_error_documentation = billfold.app.install_error_documentation


def _install_shared_documentation(app: FastAPI, **options: object) -> None:
    """`create_app`'s document, generated once a process for each set of routes.

    Generating it takes 2-3 s (FastAPI analyses every route and model again) and the suite
    builds hundreds of applications, dozens of which serve `/openapi.json`; every one of
    them has the same routes, so the same document. An application whose routes differ
    (a test added one) gets its own. Each application gets a copy, to change as it likes."""
    _install_error_documentation(app, **options)  # type: ignore[arg-type]
    generate = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            key = (app.title, app.version, app.summary, *_routes_signature(app.routes))
            if key not in _documents:
                _documents[key] = copy.deepcopy(generate())
            app.openapi_schema = copy.deepcopy(_documents[key])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


billfold.app.install_error_documentation = _install_shared_documentation  # type: ignore[assignment]

POSTGRES_ADMIN_URL = os.environ.get(
    "BILLFOLD_TEST_POSTGRES_URL", "postgresql://postgres@/postgres?host=/var/run/postgresql"
)
BACKENDS = ["sqlite", "postgresql"]
DROPS_AT_ONCE = 8


def _with_database(url: str, database: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return f"{base}?{query}" if query else base


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class PostgresDatabases:
    """Creates databases from the session's migrated template and drops them all at the end."""

    def __init__(self) -> None:
        self.prefix = f"billfold_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []

    def create(self) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return _with_database(POSTGRES_ADMIN_URL, name)

    def drop_all(self) -> None:
        """Several at once: one by one, a worker's hundred took 20 s at the end of its run."""

        async def drop(name: str, slots: asyncio.Semaphore) -> None:
            async with slots:
                await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        async def drop_created() -> None:
            slots = asyncio.Semaphore(DROPS_AT_ONCE)
            await asyncio.gather(*(drop(name, slots) for name in self.created))
            await drop(self.template, slots)

        asyncio.run(drop_created())


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{databases.template}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true and is unreachable: {error}")
        pytest.skip(f"PostgreSQL unreachable: {error}")
    try:
        upgrade(_with_database(POSTGRES_ADMIN_URL, databases.template))
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "billfold.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_databases: PostgresDatabases) -> str:
    """One database shared by the session's tests; each test works in its own tenant."""
    return postgres_databases.create()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sqlite_copy(template: Path, directory: Path) -> str:
    path = directory / f"billfold-{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database on `backend`; PostgreSQL's is shared, so use a fresh tenant."""
    if backend == "sqlite":
        return _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    return str(request.getfixturevalue("shared_postgres_url"))


@pytest.fixture
def isolated_database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database on `backend` that no other test sees."""
    if backend == "sqlite":
        return _sqlite_copy(request.getfixturevalue("sqlite_template"), tmp_path)
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return databases.create()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def open_ledger(database_url: str, **settings: object) -> Ledger:
    ledger = Ledger.from_settings(Settings(database_url=database_url, **settings))  # type: ignore[arg-type]
    await ledger.open()
    return ledger


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    opened = await open_ledger(database_url, ledger_batch_window_ms=0)
    try:
        yield opened
    finally:
        await opened.close()


class SuiteLogScanner(logging.Handler):
    """Every log line the suite writes, rendered as the application renders it (with the
    formatter `billfold.kit.http.logging` installed, when one is), scanned for emails,
    phone numbers and card numbers that escaped masking. Findings fail the session."""

    FINDINGS_KEPT_MAX = 20

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines_scanned = 0
        self.findings: list[str] = []

    def _rendered(self, record: logging.LogRecord) -> str:
        for handler in logging.getLogger().handlers:
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
                return handler.formatter.format(logging.makeLogRecord(record.__dict__))
        return record.getMessage()

    def emit(self, record: logging.LogRecord) -> None:
        from billfold.privacy.masking import find_unmasked_pii

        try:
            line = self._rendered(record)
        except Exception:  # a record that cannot render is not ours to judge
            return
        self.lines_scanned += 1
        found = find_unmasked_pii(line)
        if found and len(self.findings) < self.FINDINGS_KEPT_MAX:
            self.findings.append(f"{found} in {line[:300]}")


_suite_log_scanner = SuiteLogScanner()


@pytest.fixture(scope="session", autouse=True)
def suite_log_scanner() -> Iterator[SuiteLogScanner]:
    root = logging.getLogger()
    root.addHandler(_suite_log_scanner)
    try:
        yield _suite_log_scanner
    finally:
        root.removeHandler(_suite_log_scanner)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _suite_log_scanner.findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "unmasked PII in the test suite's log output", red=True)
        for finding in _suite_log_scanner.findings:
            reporter.write_line(finding)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
