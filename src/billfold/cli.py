"""The `billfold` command."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from billfold import __version__
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from billfold.kit.db import parse_database_url
from billfold.kit.errors import BillfoldError
from billfold.kit.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from billfold.identity.service import CreatedApiKey

__all__ = ["app", "main"]

app = typer.Typer(no_args_is_help=True, help="Billfold: wallets and payments over a ledger.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
ledger_app = typer.Typer(no_args_is_help=True, help="The double-entry ledger.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (created here, not over HTTP).")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys: shown once, stored hashed.")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(tenant_app, name="tenant")
app.add_typer(apikey_app, name="apikey")
operator_app = typer.Typer(no_args_is_help=True, help="Operators: the tenant's back office.")
app.add_typer(operator_app, name="operator")
events_app = typer.Typer(no_args_is_help=True, help="Events: the outbox and webhook replays.")
app.add_typer(events_app, name="events")
console = Console()
errors = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"billfold {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Billfold: wallets and payments over a double-entry ledger."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Processes to run (PostgreSQL only)."),
    ] = None,
) -> None:
    """Run the API server (creates and migrates a SQLite database on first start)."""
    import uvicorn

    settings = get_settings()
    processes = workers or settings.workers
    if processes > 1 and parse_database_url(settings.database_url).kind == "sqlite":
        # Each process would migrate the file at startup, racing the others.
        errors.print("SQLite is served by one process: drop --workers or use PostgreSQL.")
        raise typer.Exit(2)
    console.print(f"Billfold {__version__} on [bold]{_describe(settings.database_url)}[/bold]")
    uvicorn.run(
        "billfold.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=processes,
        log_level=settings.log_level,
        # The app logs JSON itself (one access line per request, with the request id and
        # tenant); uvicorn's own configuration and access log would duplicate it as text.
        log_config=None,
        access_log=False,
    )


@app.command()
def worker(
    drain: Annotated[
        bool, typer.Option("--drain", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Run the background worker: outbox dispatch (in-process, NATS, webhooks), inbound
    notifications, pending-transfer expiry and idempotency-key purge. Several may run on
    PostgreSQL; on SQLite run one, and set BILLFOLD_EMBEDDED_WORKER=false for `serve`."""
    from billfold.worker import run_worker

    settings = get_settings()
    if parse_database_url(settings.database_url).kind == "sqlite":
        from billfold.migrations import upgrade

        upgrade(settings.database_url)
    console.print(f"Billfold worker on [bold]{_describe(settings.database_url)}[/bold]")
    try:
        asyncio.run(run_worker(settings, drain=drain))
    except KeyboardInterrupt:
        errors.print("Worker stopped.")


@events_app.command("replay")
def events_replay(
    event_id: Annotated[str, typer.Argument(help="The event's id, evt_….")],
    tenant: Annotated[str, typer.Option(help="The tenant's id, ten_….")],
    mode: Annotated[Mode, typer.Option(help="test or live.")] = Mode.TEST,
    endpoint: Annotated[
        str | None, typer.Option(help="Only to this endpoint, whe_… (default: every one).")
    ] = None,
) -> None:
    """Deliver an event to webhook endpoints again (same webhook-id); the worker sends it."""
    from billfold.events import service as events_service
    from billfold.events.schemas import DELIVERY_ID_PREFIX, ENDPOINT_ID_PREFIX
    from billfold.events.types import EVENT_ID_PREFIX
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.kit.ids import format_id, parse_id

    scope = events_service.Scope(tenant_id=parse_id(TENANT_ID_PREFIX, tenant), mode=mode)
    ids = _in_unit_of_work(
        lambda session, now_ns: events_service.replay_event(
            session,
            scope=scope,
            event_id=parse_id(EVENT_ID_PREFIX, event_id),
            endpoint_id=None if endpoint is None else parse_id(ENDPOINT_ID_PREFIX, endpoint),
            now_ns=now_ns,
        )
    )
    for identifier in ids:
        typer.echo(f"delivery  {format_id(DELIVERY_ID_PREFIX, identifier)}")
    if not ids:
        errors.print("No enabled endpoint wants this event.")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply database migrations up to REVISION."""
    from billfold.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    console.print(f"Database {_describe(settings.database_url)} is at {revision}.")


@ledger_app.command("verify")
def ledger_verify(
    grace_s: Annotated[
        int | None,
        typer.Option(help="Report pending transfers open this long past their timeout."),
    ] = None,
) -> None:
    """Recompute every balance from the transfers and check the books; exit 1 on a problem."""
    from billfold.ledger.ledger import Ledger

    settings = get_settings()
    target = parse_database_url(settings.database_url)
    if target.sqlite_path is not None and not Path(target.sqlite_path).exists():
        errors.print(f"No database at {target.sqlite_path}: run `billfold db upgrade` first.")
        raise typer.Exit(2)

    async def run() -> None:
        ledger = Ledger.from_settings(settings)
        await ledger.repository.open()
        try:
            with console.status("Replaying every transfer…"):
                report = await ledger.verify(
                    grace_s=settings.ledger_expiry_grace_s if grace_s is None else grace_s
                )
        finally:
            await ledger.repository.close()
        summary = (
            f"{report.accounts_checked} accounts, {report.transfers_checked} transfers,"
            f" {report.ledgers_checked} ledgers checked"
        )
        if report.ok:
            console.print(f"[green]Ledger verified[/green]: {summary}; no problems.")
            return
        table = Table("problem", "subject", "detail", title=f"{report.problems_found} problems")
        for problem in report.problems:
            table.add_row(problem.kind, problem.subject, problem.detail)
        console.print(table)
        if report.problems_found > len(report.problems):
            console.print(f"(first {len(report.problems)} of {report.problems_found} shown)")
        errors.print(f"[red]Ledger verification failed[/red]: {summary}.")
        raise typer.Exit(1)

    asyncio.run(run())


T = TypeVar("T")
_EXPIRY_DAYS_MAX = 3660


def _in_unit_of_work(action: Callable[[AsyncSession, int], Awaitable[T]]) -> T:
    """Run ``action(session, now_ns)`` in one committed unit of work; a Billfold error is
    printed and exits 1. On SQLite the database is migrated first, as `serve` does."""
    from billfold.kit.db import UnitOfWork, create_engine
    from billfold.migrations import upgrade

    settings = get_settings()
    if parse_database_url(settings.database_url).kind == "sqlite":
        upgrade(settings.database_url)

    async def run() -> T:
        engine = create_engine(parse_database_url(settings.database_url), pool_size=1)
        try:
            async with UnitOfWork(engine).begin() as session:
                return await action(session, time.time_ns())
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except BillfoldError as error:
        # Escaped: a detail may quote input, and Rich would read brackets in it as markup.
        detail = f": {escape(error.detail)}" if error.detail else ""
        errors.print(f"[red]{error.title}[/red]{detail}", highlight=False)
        raise typer.Exit(1) from error


def _print_key(label: str, created: CreatedApiKey) -> None:
    from billfold.identity.schemas import API_KEY_ID_PREFIX
    from billfold.kit.ids import format_id

    # Plain echo, not Rich: a key must never be wrapped, truncated or styled.
    api_key_id = format_id(API_KEY_ID_PREFIX, created.api_key.id)
    typer.echo(f"{label:<9} {api_key_id}  {created.secret}")


@tenant_app.command("create")
def tenant_create(name: Annotated[str, typer.Argument(help="The tenant's name.")]) -> None:
    """Create a tenant and its first tenant:admin API key for each mode (shown once)."""
    from billfold.identity import service
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.kit.ids import format_id

    bootstrapped = _in_unit_of_work(
        lambda session, now_ns: service.bootstrap_tenant(session, name=name, now_ns=now_ns)
    )
    typer.echo(f"{'tenant':<9} {format_id(TENANT_ID_PREFIX, bootstrapped.tenant.id)}  {name}")
    _print_key("test key", bootstrapped.test_key)
    _print_key("live key", bootstrapped.live_key)
    errors.print("The keys are shown this once and stored only as hashes: keep them now.")


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="The tenant's id, ten_….")],
    scope: Annotated[list[Scope], typer.Option(help="A scope to grant; repeat for more.")],
    mode: Annotated[Mode, typer.Option(help="test or live.")] = Mode.TEST,
    name: Annotated[str, typer.Option(help="What to call the key.")] = "Command-line key",
    expires_in_days: Annotated[
        int | None,
        typer.Option(min=1, max=_EXPIRY_DAYS_MAX, help="Expire after this many days."),
    ] = None,
) -> None:
    """Create an API key for a tenant and print it (shown once)."""
    from billfold.identity import service
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.kit.clock import NANOSECONDS_PER_SECOND
    from billfold.kit.ids import parse_id

    def create(session: AsyncSession, now_ns: int) -> Awaitable[CreatedApiKey]:
        expires_at_ns = None
        if expires_in_days is not None:
            expires_at_ns = now_ns + expires_in_days * 86_400 * NANOSECONDS_PER_SECOND
        return service.create_api_key(
            session,
            tenant_id=parse_id(TENANT_ID_PREFIX, tenant),
            name=name,
            mode=mode,
            scopes=scope,
            expires_at_ns=expires_at_ns,
            now_ns=now_ns,
        )

    _print_key(f"{mode.value} key", _in_unit_of_work(create))
    errors.print("The key is shown this once and stored only as a hash: keep it now.")


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key's id, key_….")]) -> None:
    """Revoke an API key of any tenant, at once."""
    from billfold.identity import service
    from billfold.identity.schemas import API_KEY_ID_PREFIX
    from billfold.kit.ids import parse_id

    _in_unit_of_work(
        lambda session, now_ns: service.revoke_api_key_any_tenant(
            session, api_key_id=parse_id(API_KEY_ID_PREFIX, key_id), now_ns=now_ns
        )
    )
    typer.echo(f"revoked   {key_id}")


@operator_app.command("create")
def operator_create(
    tenant: Annotated[str, typer.Option(help="The tenant's id, ten_….")],
    email: Annotated[str, typer.Option(help="The operator's sign-in address.")],
    role: Annotated[list[Role], typer.Option(help="A role to grant; repeat for more.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the email).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an operator and print a one-time password (or take one from stdin)."""
    from billfold.identity.operators import service
    from billfold.identity.operators.types import OPERATOR_ID_PREFIX, Actor
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.kit.ids import format_id, parse_id

    password = _read_password() if password_stdin else None
    created = _in_unit_of_work(
        lambda session, now_ns: service.create_operator(
            session,
            tenant_id=parse_id(TENANT_ID_PREFIX, tenant),
            email=email,
            display_name=name or email,
            roles=role,
            password=password,
            actor=Actor.system(),
            now_ns=now_ns,
        )
    )
    operator = created.operator
    typer.echo(f"{'operator':<9} {format_id(OPERATOR_ID_PREFIX, operator.id)}  {operator.email}")
    typer.echo(f"{'roles':<9} {operator.roles}")
    if created.one_time_password is not None:
        # Plain echo, not Rich: a password must never be wrapped, truncated or styled.
        typer.echo(f"{'password':<9} {created.one_time_password}")
        errors.print("The one-time password is shown this once; it must be changed at sign-in.")


def _read_password() -> str:
    """One line from standard input, bounded (a password is at most 256 characters)."""
    from billfold.identity.operators.passwords import PASSWORD_LENGTH_MAX

    line = sys.stdin.readline(PASSWORD_LENGTH_MAX + 2)
    return line.removesuffix("\n").removesuffix("\r")


def _describe(database_url: str) -> str:
    """The database URL without a password."""
    target = parse_database_url(database_url)
    if target.kind == "sqlite":
        return f"SQLite {target.sqlite_path}"
    _scheme, _, rest = target.url.partition("://")
    credentials, at, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"PostgreSQL {user}{at}{location}" if at else f"PostgreSQL {rest}"


def main() -> None:
    app()


if __name__ == "__main__":
    main()
