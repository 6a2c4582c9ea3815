"""The `billfold` command."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError
from typer.core import TyperGroup

from billfold import __version__
from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from billfold.kit.db import DatabaseTarget, parse_database_url
from billfold.kit.errors import BillfoldError
from billfold.kit.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from billfold.audit.audit import AuditService
    from billfold.audit.verify import ChainReport
    from billfold.identity.service import CreatedApiKey
    from billfold.keys.keyring import Keyring
    from billfold.risk.backtest import BacktestReport

__all__ = ["app", "main"]


class _Commands(TyperGroup):
    """Runs every command so that a failure its user can fix ends as one line on standard
    error and a non-zero exit, never a traceback: a Billfold error wherever it is raised
    (a malformed BILLFOLD_DATABASE_URL, say) exits 1 naming its code, as the commands'
    own refusals do; invalid settings exit 2; a database that cannot be reached or used
    exits 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BillfoldError as error:
            raise _failed(error) from error
        except ValidationError as error:
            if error.title != "Settings":
                raise
            errors.print(
                f"[red]Invalid settings[/red]: {escape(_settings_problems(error))}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from error
        except BrokenPipeError:
            raise  # the reader went away (`billfold … | head`): Typer exits without a word
        except (DBAPIError, OSError) as error:
            raise _unusable(error, _describe_setting()) from error


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    help="Billfold: wallets and payments over a ledger.",
)
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
fx_app = typer.Typer(no_args_is_help=True, help="FX: reference rates.")
app.add_typer(fx_app, name="fx")
keys_app = typer.Typer(no_args_is_help=True, help="The key hierarchy: rotate, rewrap, retire.")
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
app.add_typer(audit_app, name="audit")
events_app = typer.Typer(no_args_is_help=True, help="Events: the outbox and webhook replays.")
app.add_typer(events_app, name="events")
risk_app = typer.Typer(no_args_is_help=True, help="Real-time risk: rule backtests, models.")
app.add_typer(risk_app, name="risk")
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
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port to listen on.")] = None,
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
        # A live stream lasts up to events_stream_duration_max_s (300 s): without a bound,
        # a SIGTERM waited for every open one, past a process manager's grace period.
        # Streams cut here resume with Last-Event-ID.
        timeout_graceful_shutdown=settings.shutdown_grace_s,
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
    from billfold.worker import main

    settings = get_settings()
    if parse_database_url(settings.database_url).kind == "sqlite":
        from billfold.migrations import upgrade

        upgrade(settings.database_url)
    console.print(f"Billfold worker on [bold]{_describe(settings.database_url)}[/bold]")
    try:
        main(settings, drain=drain)
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
    """Deliver an event to webhook endpoints again (same webhook-id); the worker sends it.
    Exits 1 when nothing is queued: the endpoint named is disabled or not subscribed to the
    event's type, or no enabled endpoint wants the event."""
    from billfold.events import service as events_service
    from billfold.events.schemas import DELIVERY_ID_PREFIX, ENDPOINT_ID_PREFIX
    from billfold.events.types import EVENT_ID_PREFIX
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.kit.ids import format_id

    scope = events_service.Scope(tenant_id=_parsed_id(TENANT_ID_PREFIX, tenant), mode=mode)
    ids = _in_unit_of_work(
        lambda session, now_ns: events_service.replay_event(
            session,
            scope=scope,
            event_id=_parsed_id(EVENT_ID_PREFIX, event_id),
            endpoint_id=None if endpoint is None else _parsed_id(ENDPOINT_ID_PREFIX, endpoint),
            now_ns=now_ns,
        )
    )
    for identifier in ids:
        typer.echo(f"delivery  {format_id(DELIVERY_ID_PREFIX, identifier)}")
    if not ids:  # nothing queued: what was asked did not happen, so a script must see it
        errors.print("No enabled endpoint wants this event: nothing was queued.")
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply database migrations up to REVISION."""
    from alembic.util import CommandError

    from billfold.migrations import upgrade

    settings = get_settings()
    try:
        upgrade(settings.database_url, revision)
    except CommandError as error:
        # A revision Alembic does not know: its words, not its traceback.
        errors.print(
            f"[red]Cannot upgrade[/red] to {escape(revision)}: {escape(str(error))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from error
    # Where the database is, not REVISION: a database already past it stays where it is.
    current = _revision_of(parse_database_url(settings.database_url))
    console.print(f"Database {_describe(settings.database_url)} is at {current}.", soft_wrap=True)


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision; exit 1 if it lacks migrations of this release."""
    from billfold.migrations import missing_revisions

    settings = get_settings()
    current = _revision_of(_require_database(settings.database_url))
    missing = missing_revisions(current)
    # Never wrapped: a script may read the revision off the line's end.
    console.print(
        f"Database {_describe(settings.database_url)} is at {current or 'no revision'}.",
        soft_wrap=True,
    )
    if missing:
        errors.print(
            f"It lacks {len(missing)} migration(s) of this release, up to {missing[0]}:"
            " run `billfold db upgrade`.",
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _revision_of(target: DatabaseTarget) -> str | None:
    """The revision the database at `target` is at (None: not migrated at all)."""
    from billfold.kit.db import create_engine
    from billfold.migrations import current_revision

    async def read() -> str | None:
        engine = create_engine(target, pool_size=1)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())


@ledger_app.command("verify")
def ledger_verify(
    grace_s: Annotated[
        int | None,
        typer.Option(
            min=0, max=86_400, help="Report pending transfers open this long past their timeout."
        ),
    ] = None,
) -> None:
    """Recompute every balance from the transfers and check the books; exit 1 on a problem."""
    from billfold.ledger.ledger import Ledger

    settings = get_settings()
    _require_database(settings.database_url)

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
        table = Table(title=f"{report.problems_found} problems")
        table.add_column("problem", no_wrap=True)
        table.add_column("subject", no_wrap=True)  # an id to copy whole into a lookup
        table.add_column("detail")
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
_AUDIT_CHECKPOINT_ROUNDS_MAX = 1_000
_JWKS_BYTES_MAX = 1_000_000


def _failed(error: BillfoldError) -> typer.Exit:
    """Print a Billfold error, its stable code with it, and give the exit (1) to raise."""
    # Escaped: a detail may quote input, and Rich would read brackets in it as markup.
    detail = f": {escape(error.detail)}" if error.detail else ""
    # Never wrapped: a script may look for the code or the detail's words in the line.
    errors.print(
        f"[red]{error.title}[/red] ({error.code}){detail}", highlight=False, soft_wrap=True
    )
    return typer.Exit(1)


def _unusable(error: DBAPIError | OSError, database: str) -> typer.Exit:
    """Print in one line why the command failed on its database (described by `database`)
    or on a file, and give the exit (1) to raise."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    message = (str(cause).strip() or "-").splitlines()[0]
    # A file's error names its file; any other is most likely the database's.
    about = isinstance(error, DBAPIError) or error.filename is None
    errors.print(
        f"[red]Failed[/red] ({type(cause).__name__}): {escape(message)}"
        + (f" (database: {escape(database)})" if about else ""),
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(1)


def _settings_problems(error: ValidationError) -> str:
    """Each invalid setting, named by its variable, on one line. Without the input: a check
    of several settings at once gets all of them, and Pydantic's text would quote the
    start of BILLFOLD_MASTER_KEY or a database URL's password."""
    return "; ".join(
        f"BILLFOLD_{'_'.join(map(str, problem['loc'])).upper()}: {problem['msg']}"
        if problem["loc"]
        else problem["msg"]
        for problem in error.errors(include_input=False, include_url=False)
    )


def _require_database(database_url: str) -> DatabaseTarget:
    """The database at `database_url`; a SQLite file that does not exist exits 1, as a
    database that cannot be reached does, instead of being created empty by a command that
    only reads it."""
    target = parse_database_url(database_url)
    if target.sqlite_path is not None and not Path(target.sqlite_path).exists():
        errors.print(f"No database at {target.sqlite_path}: run `billfold db upgrade` first.")
        raise typer.Exit(1)
    return target


def _parsed_id(prefix: str, text: str) -> uuid.UUID:
    """`parse_id` for a command-line argument: a malformed id exits 1 with its problem, as
    every refusal does, wherever the command parses it (not with a traceback)."""
    from billfold.kit.ids import InvalidId, parse_id

    try:
        return parse_id(prefix, text)
    except InvalidId as error:
        raise _failed(error) from error


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
        raise _failed(error) from error


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

    def create(session: AsyncSession, now_ns: int) -> Awaitable[CreatedApiKey]:
        expires_at_ns = None
        if expires_in_days is not None:
            expires_at_ns = now_ns + expires_in_days * 86_400 * NANOSECONDS_PER_SECOND
        return service.create_api_key(
            session,
            tenant_id=_parsed_id(TENANT_ID_PREFIX, tenant),
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

    _in_unit_of_work(
        lambda session, now_ns: service.revoke_api_key_any_tenant(
            session, api_key_id=_parsed_id(API_KEY_ID_PREFIX, key_id), now_ns=now_ns
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
    from billfold.kit.ids import format_id

    password = _read_password() if password_stdin else None
    created = _in_unit_of_work(
        lambda session, now_ns: service.create_operator(
            session,
            tenant_id=_parsed_id(TENANT_ID_PREFIX, tenant),
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


_TENANT_HELP = "The tenant's id, ten_…, or 'platform' for platform keys."
_PURPOSE_HELP = "pii, tokens, blind_index, signing, totp or webhooks."


def _tenant_of(text: str) -> uuid.UUID:
    from billfold.identity.schemas import TENANT_ID_PREFIX
    from billfold.keys.keyring import PLATFORM_TENANT_ID

    return PLATFORM_TENANT_ID if text == "platform" else _parsed_id(TENANT_ID_PREFIX, text)


def _existing_tenant_of(text: str) -> uuid.UUID:
    """`_tenant_of`, for commands that make keys: the tenant must exist. The keyring makes
    a first version for any id on demand, so a mistyped one got keys of its own."""
    from billfold.identity.errors import TenantNotFound
    from billfold.identity.repository import TenantRepository
    from billfold.keys.keyring import PLATFORM_TENANT_ID

    tenant_id = _tenant_of(text)
    if tenant_id != PLATFORM_TENANT_ID:
        found = _in_unit_of_work(lambda session, _now_ns: TenantRepository(session).get(tenant_id))
        if found is None:
            raise _failed(TenantNotFound(f"No tenant {text}."))
    return tenant_id


def _with_keyring(action: Callable[[Keyring, AsyncSession, int], Awaitable[T]]) -> T:
    """`_in_unit_of_work` with the settings' keyring."""
    from billfold.keys.config import keyring_from_settings

    keyring = keyring_from_settings(get_settings())
    try:
        return _in_unit_of_work(lambda session, now_ns: action(keyring, session, now_ns))
    finally:
        keyring.close()


@keys_app.command("status")
def keys_status(
    tenant: Annotated[str | None, typer.Option(help=_TENANT_HELP + " Default: all.")] = None,
) -> None:
    """Every key version per tenant and purpose, with the data keys each still wraps."""
    from billfold.keys import service

    tenant_id = None if tenant is None else _tenant_of(tenant)
    statuses = _in_unit_of_work(
        lambda session, _now_ns: service.list_key_statuses(session, tenant_id=tenant_id)
    )
    table = Table("tenant", "purpose", "version", "status", "data keys")
    for status in statuses:
        for version in status.versions:
            table.add_row(
                status.tenant_id.hex,
                status.purpose,
                str(version.version),
                version.status,
                str(version.data_keys),
            )
    console.print(table)


@keys_app.command("rotate")
def keys_rotate(
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP)],
    purpose: Annotated[str, typer.Option(help=_PURPOSE_HELP)],
) -> None:
    """Make a new key version active; the previous one becomes decrypt-only."""
    from billfold.keys import service

    tenant_id = _existing_tenant_of(tenant)
    row = _with_keyring(
        lambda keyring, session, now_ns: service.rotate(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose=purpose,
            actor=service.KeyActor(),
            now_ns=now_ns,
        )
    )
    typer.echo(f"rotated   {purpose} v{row.version} active ({row.keystore_key_id})")


@keys_app.command("rewrap")
def keys_rewrap(
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP)],
    purpose: Annotated[str, typer.Option(help=_PURPOSE_HELP)],
) -> None:
    """Re-wrap every data key under the active version, in batches, with progress."""
    from rich.progress import Progress

    from billfold.keys.config import keyring_from_settings
    from billfold.keys.service import KeyActor, RewrapProgress
    from billfold.keys.tasks import rewrap_all
    from billfold.kit.db import UnitOfWork, create_engine

    settings = get_settings()
    tenant_id = _existing_tenant_of(tenant)
    if parse_database_url(settings.database_url).kind == "sqlite":
        from billfold.migrations import upgrade

        upgrade(settings.database_url)  # as the other commands do

    async def run() -> int:
        engine = create_engine(parse_database_url(settings.database_url), pool_size=1)
        keyring = keyring_from_settings(settings)
        try:
            with Progress(console=console) as progress:
                task = progress.add_task(f"rewrap {purpose}", total=None)

                def report(step: RewrapProgress) -> None:
                    done = progress.tasks[0].completed + step.rewrapped
                    progress.update(task, completed=done, total=done + step.remaining)

                return await rewrap_all(
                    UnitOfWork(engine),
                    keyring,
                    tenant_id=tenant_id,
                    purpose=purpose,
                    batch_size=settings.keys_rewrap_batch_size,
                    actor=KeyActor(),
                    on_progress=report,
                )
        finally:
            keyring.close()
            await engine.dispose()

    try:
        moved = asyncio.run(run())
    except BillfoldError as error:
        raise _failed(error) from error
    typer.echo(f"rewrapped {moved} data keys")


@keys_app.command("retire")
def keys_retire(
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP)],
    purpose: Annotated[str, typer.Option(help=_PURPOSE_HELP)],
    version: Annotated[int, typer.Option(min=1, help="The decrypt-only version to retire.")],
) -> None:
    """Erase a decrypt-only version once it wraps no data key (run rewrap first)."""
    from billfold.keys import service

    tenant_id = _tenant_of(tenant)
    _with_keyring(
        lambda keyring, session, now_ns: service.retire_version(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose=purpose,
            version=version,
            actor=service.KeyActor(),
            now_ns=now_ns,
        )
    )
    typer.echo(f"retired   {purpose} v{version}")


@keys_app.command("seal-totp-seeds")
def keys_seal_totp_seeds() -> None:
    """Encrypt the TOTP seeds still stored in the clear (enrolled before migration 0014)."""
    from billfold.identity.users.totp_seeds import seal_clear_seeds
    from billfold.keys.config import keyring_from_settings

    keyring = keyring_from_settings(get_settings())
    total = 0
    try:  # in batches, one transaction each: safe to interrupt and run again
        while sealed := _in_unit_of_work(
            lambda session, now_ns: seal_clear_seeds(session, keyring, now_ns=now_ns)
        ):
            total += sealed
    finally:
        keyring.close()
    typer.echo(f"sealed    {total} TOTP seeds")


@keys_app.command("rotate-signing")
def keys_rotate_signing(
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP)] = "platform",
    purpose: Annotated[str, typer.Option(help="What the key signs.")] = "audit",
) -> None:
    """A new Ed25519 signing key version; the old one stays published, verify-only."""
    from billfold.keys.service import KeyActor
    from billfold.keys.signing import SIGNING_KEY_ID_PREFIX, rotate_signing_key
    from billfold.kit.ids import format_id

    tenant_id = _existing_tenant_of(tenant)
    row = _with_keyring(
        lambda keyring, session, now_ns: rotate_signing_key(
            session,
            keyring=keyring,
            tenant_id=tenant_id,
            purpose=purpose,
            actor=KeyActor(),
            now_ns=now_ns,
        )
    )
    typer.echo(f"signing   {format_id(SIGNING_KEY_ID_PREFIX, row.id)} v{row.version} active")


@keys_app.command("retire-signing")
def keys_retire_signing(
    key: Annotated[str, typer.Option(help="The verify-only signing key to retire, sig_….")],
    tenant: Annotated[str, typer.Option(help=_TENANT_HELP)] = "platform",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Unpublish a verify-only signing key and erase its private key, for good. Every
    signature it made stops verifying against the published keys (an audit key: every
    checkpoint it signed), so retire one only if it leaked."""
    from billfold.keys.service import KeyActor
    from billfold.keys.signing import retire_signing_key

    tenant_id = _tenant_of(tenant)
    if not yes and not typer.confirm(
        f"Retire {key}? Signatures it made will no longer verify against the published keys."
    ):
        raise typer.Exit(1)
    row = _in_unit_of_work(
        lambda session, now_ns: retire_signing_key(
            session, tenant_id=tenant_id, key_id=key, actor=KeyActor(), now_ns=now_ns
        )
    )
    typer.echo(f"retired   {key} ({row.purpose} v{row.version})")


def _audit_service() -> tuple[AuditService, AsyncEngine, Keyring]:
    """The audit service with the key hierarchy's platform "audit" signing keys."""
    from billfold.audit.audit import AuditService
    from billfold.keys.config import keyring_from_settings
    from billfold.keys.signing import HierarchySigningKeys
    from billfold.kit.db import UnitOfWork, create_engine

    settings = get_settings()
    engine = create_engine(parse_database_url(settings.database_url), pool_size=1)
    keyring = keyring_from_settings(settings)
    service = AuditService(
        UnitOfWork(engine),
        signing_keys=HierarchySigningKeys(keyring, purpose="audit"),
        checkpoint_entries_max=settings.audit_checkpoint_entries_max,
    )
    return service, engine, keyring


def _run_audit(action: Callable[[AuditService], Awaitable[T]]) -> T:
    """Run ``action`` with the configured audit service; a Billfold error exits 1. On
    SQLite the database is migrated first, as `serve` does."""
    from billfold.migrations import upgrade

    settings = get_settings()
    if parse_database_url(settings.database_url).kind == "sqlite":
        upgrade(settings.database_url)

    async def run() -> T:
        service, engine, keyring = _audit_service()
        try:
            return await action(service)
        finally:
            keyring.close()
            await engine.dispose()

    try:
        return asyncio.run(run())
    except BillfoldError as error:
        raise _failed(error) from error


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint for every chain with entries no checkpoint covers yet."""

    async def checkpoint_all(service: AuditService) -> int:
        signed, rounds = 0, 0
        # A chain with more new entries than one checkpoint covers takes several rounds.
        while rounds < _AUDIT_CHECKPOINT_ROUNDS_MAX:
            made = await service.checkpoint_due()
            if made == 0:
                break
            signed, rounds = signed + made, rounds + 1
        return signed

    signed = _run_audit(checkpoint_all)
    console.print(f"Signed {signed} checkpoint(s).")


@audit_app.command("public-key")
def audit_public_key(
    jwks: Annotated[
        bool, typer.Option("--jwks", help="Print the JWKS of /.well-known/jwks.json instead.")
    ] = False,
) -> None:
    """Print the active checkpoint signing key's id and raw Ed25519 public key (hex)."""
    if jwks:
        from billfold.keys.keyring import PLATFORM_TENANT_ID
        from billfold.keys.signing import jwks_of, published_signing_keys

        async def published(service: AuditService) -> dict[str, list[dict[str, str]]]:
            async with service.unit_of_work.begin() as session:
                rows = await published_signing_keys(session, tenant_id=PLATFORM_TENANT_ID)
                return jwks_of(rows)

        typer.echo(json.dumps(_run_audit(published), indent=2))
        return
    key_id, public_key = _run_audit(lambda service: service.active_key())
    typer.echo(f"{key_id} {public_key.hex()}")


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[
        str | None, typer.Option(help="Verify only this tenant's chain (ten_…).")
    ] = None,
    platform: Annotated[
        bool, typer.Option("--platform", help="Verify only the platform chain.")
    ] = False,
    public_key: Annotated[
        list[str] | None,
        typer.Option(help="Trust this 'KEY_ID:HEX' public key instead of the configured ones."),
    ] = None,
    jwks: Annotated[
        Path | None,
        typer.Option(help="Trust the keys of this JWKS file (a saved /.well-known/jwks.json)."),
    ] = None,
) -> None:
    """Check every entry, checkpoint and chain head; exit 1 naming the first bad position."""
    from billfold.audit.encoding import PLATFORM_CHAIN_ID
    from billfold.identity.schemas import TENANT_ID_PREFIX

    if tenant is not None and platform:
        errors.print("Give --tenant or --platform, not both.")
        raise typer.Exit(2)
    chain_ids = None
    if tenant is not None:
        chain_ids = [_parsed_id(TENANT_ID_PREFIX, tenant)]
    elif platform:
        chain_ids = [PLATFORM_CHAIN_ID]
    given = _trusted_keys(public_key or [])
    from_jwks = _jwks_keys(jwks)

    async def verified(service: AuditService) -> list[ChainReport]:
        trusted = None
        if public_key or jwks is not None:
            trusted = given | await _without_other_purposes(service, from_jwks)
        return await service.verify(chain_ids=chain_ids, trusted_keys=trusted)

    reports = _run_audit(verified)
    table = Table("chain", "entries", "checkpoints", "first bad position", "problem", "detail")
    for report in reports:
        problem = report.problem
        table.add_row(
            report.chain_id.hex,
            str(report.entries_checked),
            str(report.checkpoints_checked),
            "" if problem is None else str(problem.position),
            "[green]ok[/green]" if problem is None else f"[red]{problem.kind}[/red]",
            "" if problem is None else escape(problem.detail),
        )
    console.print(table)
    broken = [report for report in reports if not report.ok]
    if broken:
        errors.print(f"[red]Audit verification failed[/red]: {len(broken)} chain(s) broken.")
        raise typer.Exit(1)
    if tenant is not None and reports[0].entries_checked == 0:
        # Every tenant's chain opens with its tenant.created entry: an empty one is a
        # mistyped id or a chain deleted whole, not a log that verified.
        errors.print(
            f"[red]No audit chain for {escape(tenant)}[/red]: no such tenant, or its chain is gone."
        )
        raise typer.Exit(1)
    console.print(f"[green]Audit log verified[/green]: {len(reports)} chain(s).")


def _trusted_keys(options: list[str]) -> dict[str, bytes]:
    trusted: dict[str, bytes] = {}
    for option in options:
        key_id, _, hex_key = option.partition(":")
        try:
            raw = bytes.fromhex(hex_key)
        except ValueError:
            raw = b""
        if not key_id or len(raw) != 32:
            errors.print("--public-key is KEY_ID:HEX with a 32-byte Ed25519 key.")
            raise typer.Exit(2)
        trusted[key_id] = raw
    return trusted


def _jwks_keys(path: Path | None) -> dict[str, bytes]:
    """Key id → raw public key of each key of the JWKS file at ``path`` published for
    signatures as `/.well-known/jwks.json` publishes them (Ed25519, `use` sig, `alg`
    EdDSA, `kid` sig_…): a key for encryption or another algorithm is not trusted."""
    from billfold.keys.signing import signature_keys_of_jwks

    if path is None:
        return {}
    try:
        with path.open("rb") as file:
            return signature_keys_of_jwks(json.loads(file.read(_JWKS_BYTES_MAX)))
    except (OSError, ValueError) as error:
        errors.print(f"--jwks {escape(str(path))} is not a JWKS of Ed25519 keys: {error}")
        raise typer.Exit(2) from error


async def _without_other_purposes(
    service: AuditService, keys: dict[str, bytes]
) -> dict[str, bytes]:
    """The JWKS's `keys` less those the database knows as another purpose's or a
    tenant's (a platform JWKS holds every purpose's keys, and a JWK does not name its
    purpose); each one dropped is named on stderr."""
    from billfold.keys.keyring import PLATFORM_TENANT_ID
    from billfold.keys.signing import signing_keys_not_for

    if not keys:
        return {}
    async with service.unit_of_work.read() as session:
        foreign = await signing_keys_not_for(
            session, keys, tenant_id=PLATFORM_TENANT_ID, purpose="audit"
        )
    for kid, what in foreign.items():
        errors.print(f"--jwks: not trusting {escape(kid)}, {escape(what)}, for audit checkpoints")
    return {kid: key for kid, key in keys.items() if kid not in foreign}


@audit_app.command("prove")
def audit_prove(
    entry_id: Annotated[str, typer.Argument(help="The entry's id, aud_….")],
) -> None:
    """Print an inclusion proof of an entry in the signed checkpoint covering it (JSON)."""
    from billfold.audit import service
    from billfold.audit.errors import AuditEntryNotFound
    from billfold.audit.models import AuditEntry
    from billfold.audit.schemas import ENTRY_ID_PREFIX, InclusionProofResponse

    parsed = _parsed_id(ENTRY_ID_PREFIX, entry_id)

    async def prove(audit: AuditService) -> InclusionProofResponse:
        async with audit.unit_of_work.begin() as session:
            entry = await session.get(AuditEntry, parsed)
            if entry is None:
                raise AuditEntryNotFound()
            proof = await service.prove_inclusion(
                session, tenant_id=entry.tenant_id, entry_id=parsed
            )
            return InclusionProofResponse.from_proof(proof)

    typer.echo(_run_audit(prove).model_dump_json(indent=2))


def _read_password() -> str:
    """One line from standard input, bounded (a password is at most 256 characters)."""
    from billfold.identity.operators.passwords import PASSWORD_LENGTH_MAX

    line = sys.stdin.readline(PASSWORD_LENGTH_MAX + 2)
    return line.removesuffix("\n").removesuffix("\r")


def _describe_setting() -> str:
    """`_describe` of the configured database, or why it cannot be described."""
    try:
        return _describe(get_settings().database_url)
    except (BillfoldError, ValidationError):
        return "BILLFOLD_DATABASE_URL is not usable"


def _describe(database_url: str) -> str:
    """The database URL without a password."""
    target = parse_database_url(database_url)
    if target.kind == "sqlite":
        return f"SQLite {target.sqlite_path}"
    _scheme, _, rest = target.url.partition("://")
    credentials, at, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"PostgreSQL {user}{at}{location}" if at else f"PostgreSQL {rest}"


@fx_app.command("rates")
def fx_rates(
    path: Annotated[
        Path | None, typer.Argument(help="An ECB eurofxref XML file (default: the setting).")
    ] = None,
) -> None:
    """Check an ECB rates file and print the day it holds; exit 1 if it is unusable."""
    from billfold.fx.rates import RATES_DOCUMENT_MAX_BYTES, parse_ecb_xml

    chosen = path or (Path(f) if (f := get_settings().fx_rates_file) else None)
    if chosen is None:
        errors.print("No file given and BILLFOLD_FX_RATES_FILE is not set.")
        raise typer.Exit(2)
    try:
        with chosen.open("rb") as file:
            table = parse_ecb_xml(file.read(RATES_DOCUMENT_MAX_BYTES + 1))
    except (OSError, BillfoldError) as error:
        errors.print(f"[red]Unusable rates file[/red]: {escape(str(error))}")
        raise typer.Exit(1) from error
    rows = Table("currency", "per 1 EUR", title=f"ECB reference rates of {table.date}")
    for code, rate in sorted(table.rates.items()):
        rows.add_row(code, str(rate))
    console.print(rows)


@risk_app.command("backtest")
def risk_backtest(
    ruleset: Annotated[
        str,
        typer.Argument(
            help="'active', a ruleset version number, or a JSON file of rules (POST"
            " /v1/risk/rules bodies)."
        ),
    ],
    since: Annotated[str, typer.Option(help="Replay decisions made from this ISO 8601 time.")],
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant's decisions (ten_…).")
    ] = None,
    mode: Annotated[Mode | None, typer.Option(help="Only this mode's decisions.")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The database (default: BILLFOLD_DATABASE_URL).")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary instead of tables.")
    ] = False,
) -> None:
    """Replay stored decisions' features through a rule set: hits per rule, would-be
    actions, changed outcomes, and precision/recall against fraud labels."""
    import datetime

    from billfold.identity.schemas import TENANT_ID_PREFIX

    try:
        moment = datetime.datetime.fromisoformat(since)
    except ValueError:
        errors.print("--since is an ISO 8601 time, such as 2026-11-01T00:00:00Z.")
        raise typer.Exit(2) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    since_ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000
    since_ns = max(0, min(since_ns, 2**63 - 1))  # what a BIGINT column holds
    tenant_id = None if tenant is None else _parsed_id(TENANT_ID_PREFIX, tenant)
    settings = get_settings()
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    _require_database(settings.database_url)
    report = _run_backtest(
        settings.database_url,
        ruleset,
        tenant_id=tenant_id,
        mode=None if mode is None else mode.value,
        since_ns=since_ns,
        review_score=settings.risk_model_review_score,
        block_score=settings.risk_model_block_score,
        progress=not json_output,
    )
    if json_output:
        typer.echo(json.dumps(report.to_json(), sort_keys=True))
        return
    _print_backtest(report)


def _run_backtest(
    database_url: str,
    spec: str,
    *,
    tenant_id: uuid.UUID | None,
    mode: str | None,
    since_ns: int,
    review_score: float,
    block_score: float,
    progress: bool,
) -> BacktestReport:
    from rich.progress import Progress

    from billfold.kit.db import UnitOfWork, create_engine
    from billfold.risk.backtest import load_ruleset, run_backtest
    from billfold.risk.repository import DecisionRepository

    async def run() -> BacktestReport:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        unit_of_work = UnitOfWork(engine)
        try:
            # Reads only: on SQLite a `begin` would take the write lock and wait on (or hold
            # up) the live application; the README promises reads never wait.
            async with unit_of_work.read() as session:
                ruleset = await load_ruleset(session, spec, tenant_id=tenant_id, mode=mode)
                total = await DecisionRepository(session).count_since(
                    tenant_id=tenant_id, mode=mode, since_ns=since_ns
                )
            with Progress(console=errors, disable=not progress, transient=True) as bar:
                task = bar.add_task("Replaying decisions", total=total)
                return await run_backtest(
                    unit_of_work,
                    ruleset,
                    tenant_id=tenant_id,
                    mode=mode,
                    since_ns=since_ns,
                    model_review_score=review_score,
                    model_block_score=block_score,
                    on_batch=lambda count: bar.advance(task, count),
                )
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except BillfoldError as error:
        raise _failed(error) from error
    except (DBAPIError, OSError) as error:
        # Named here: the command's own database may not be BILLFOLD_DATABASE_URL's.
        raise _unusable(error, _describe(database_url)) from error


def _print_backtest(report: BacktestReport) -> None:
    rules = Table("rule", "shadow", "hits", title=f"Rule set {escape(report.ruleset)}")
    for name, count in sorted(report.hits.items(), key=lambda item: (-item[1], item[0])):
        rules.add_row(escape(name), "yes" if name in report.shadow_rules else "", str(count))
    console.print(rules)
    outcomes = Table("action", "decided", "would be", title=f"{report.decisions} decisions")
    for action in ("allow", "challenge", "review", "block"):
        outcomes.add_row(action, str(report.decided[action]), str(report.would_be[action]))
    console.print(outcomes)
    console.print(f"Outcomes that change: {report.changed}")
    for (before, after), count in sorted(report.changes.items()):
        console.print(f"  {before} -> {after}: {count}")
    if report.labelled == 0:
        console.print("No fraud labels for these decisions: no precision or recall.")
        return
    metrics = Table("", "precision", "recall", title=f"{report.labelled} labelled decisions")
    for label, figures in (
        ("replayed", report.replayed_metrics),
        ("stored", report.stored_metrics),
    ):
        metrics.add_row(label, _ratio(figures.precision), _ratio(figures.recall))
    console.print(metrics)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command()
def simulate(
    url: Annotated[str, typer.Option("--url", help="The Billfold API's base URL.")],
    api_key: Annotated[
        str,
        typer.Option(
            "--api-key",
            envvar="BILLFOLD_API_KEY",
            help="A key with users:admin, wallets:read, payments:write (and risk:write"
            " for --label).",
        ),
    ],
    seed: Annotated[int, typer.Option(help="The same seed plays the same workload.")] = 42,
    customers: Annotated[int, typer.Option(min=10, max=100_000)] = 200,
    merchants: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    hours: Annotated[int, typer.Option(min=1, max=744, help="Simulated hours.")] = 24,
    fraud_rate: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.02,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Requests in flight.")] = 8,
    out: Annotated[Path, typer.Option(help="Where the JSON lines go.")] = Path("sim.jsonl"),
    label: Annotated[
        bool, typer.Option("--label", help="Post the ground truth as risk labels.")
    ] = False,
) -> None:
    """Play a seeded, labelled PaySim-style workload (customers, merchants, fraud patterns)
    through the public API, with a progress bar; write one record per action to --out and
    print a summary. Simulated time is compressed: the order is kept, not the spacing."""
    from billfold.client.errors import BillfoldClientError
    from billfold.risk.simulator.driver import print_summary, run_simulation
    from billfold.risk.simulator.generator import SimulationConfig, generate

    config = SimulationConfig(
        seed=seed, customers=customers, merchants=merchants, hours=hours, fraud_rate=fraud_rate
    )
    scenario = generate(config)
    console.print(
        f"Simulating {len(scenario.actions)} actions of {customers} customers and"
        f" {merchants} merchants over {hours} h (seed {seed}) against [bold]{escape(url)}[/bold]"
    )
    try:
        report = run_simulation(
            scenario,
            base_url=url,
            api_key=api_key,
            out=out,
            concurrency=concurrency,
            label=label,
            console=console,
        )
    except ValueError as error:
        errors.print(f"[red]Cannot simulate[/red]: {escape(str(error))}")
        raise typer.Exit(2) from error
    except BillfoldClientError as error:
        errors.print(f"[red]The simulation stopped[/red]: {escape(str(error))}")
        raise typer.Exit(1) from error
    print_summary(report, console)
    console.print(f"Records written to [bold]{escape(str(out))}[/bold]")


@risk_app.command("train")
def risk_train(
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant, ten_… (default: every active one).")
    ] = None,
    mode: Annotated[Mode | None, typer.Option(help="Only this mode (default: both).")] = None,
) -> None:
    """Train the risk models on the labels and decisions that arrived since their latest
    versions; each model that learned anything gets a new shadow version."""
    from rich.progress import Progress

    from billfold.kit.db import UnitOfWork, create_engine
    from billfold.kit.ids import format_id
    from billfold.risk.scoring.config import ScoringConfig
    from billfold.risk.scoring.tasks import TrainingProgress, TrainingResult, train, train_all

    settings = get_settings()
    tenant_id = None if tenant is None else _tenant_of(tenant)
    if parse_database_url(settings.database_url).kind == "sqlite":
        from billfold.migrations import upgrade

        upgrade(settings.database_url)  # as the other commands do
    config = ScoringConfig.from_settings(settings)
    modes = [mode.value] if mode is not None else [Mode.TEST.value, Mode.LIVE.value]

    async def run() -> list[TrainingResult]:
        engine = create_engine(parse_database_url(settings.database_url), pool_size=1)
        unit_of_work = UnitOfWork(engine)
        now_ns = time.time_ns()
        try:
            with Progress(console=console) as progress:
                task = progress.add_task("training", total=None)

                def report(step: TrainingProgress) -> None:
                    label = f"{format_id('ten', step.tenant_id)} {step.mode} {step.kind}"
                    progress.update(task, description=label, completed=step.learned)

                if tenant_id is None:
                    everyone = await train_all(
                        unit_of_work, config=config, now_ns=now_ns, on_progress=report
                    )
                    return [r for r in everyone if mode is None or r.mode == mode.value]
                results: list[TrainingResult] = []
                for each in modes:
                    results += await train(
                        unit_of_work,
                        config=config,
                        tenant_id=tenant_id,
                        mode=each,
                        now_ns=now_ns,
                        on_progress=report,
                    )
                return results
        finally:
            await engine.dispose()

    try:
        results = asyncio.run(run())
    except BillfoldError as error:
        raise _failed(error) from error
    table = Table("tenant", "mode", "kind", "learned", "new version", title="Risk models")
    for result in results:
        created = "-"
        if result.version is not None:
            created = f"{format_id('rmv', result.version.id)} v{result.version.version} (shadow)"
        row = (format_id("ten", result.tenant_id), result.mode, result.kind, str(result.learned))
        table.add_row(*row, created)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
