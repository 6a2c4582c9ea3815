"""Structured JSON logs (structlog) and the access-log line, one per request.

Every line is one JSON object with an ISO 8601 UTC timestamp, the level, the logger name and
whatever the request has bound: `request_id` (by `RequestIdMiddleware`), `tenant` and
`actor` (by the auth layer through `bind_actor`). Standard-library `logging` records, such
as uvicorn's or `billfold.kit.errors`'s, are rendered the same way.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor

__all__ = [
    "ACCESS_LOGGER_NAME",
    "LOG_LEVELS",
    "AccessLogMiddleware",
    "bind_actor",
    "configure_logging",
]

ACCESS_LOGGER_NAME = "billfold.access"
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Ids and actor names are short; a bound on what a caller can push into every log line.
_FIELD_LENGTH_MAX = 256
_NANOSECONDS_PER_MILLISECOND = 1_000_000

_installed_handler: logging.Handler | None = None
# Tracebacks as structured frames, without each frame's local variables (structlog's
# `dict_tracebacks` shows them): a request's locals hold its Authorization header, API key,
# password or token, which must never reach a log line, not even an error's.
_tracebacks = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


@dataclass(frozen=True, slots=True)
class _DirectLine:
    """What renders an access line straight to the installed handler's stream: the
    processors a structlog event goes through before the standard library's formatter,
    and the renderer at its end. Valid while `chain` is structlog's configuration and the
    installed handler is the only one a record would reach (see `_direct_line`)."""

    chain: list[Processor]
    """The list given to structlog, which structlog keeps (and `capture_logs` empties)."""
    chain_items: tuple[Processor, ...]
    handler: logging.StreamHandler[TextIO]
    processors: tuple[Processor, ...]
    render: Processor


_direct: _DirectLine | None = None


@dataclass(slots=True)
class _RequestFields:
    """Who is making the current request, once the auth layer knows."""

    tenant: str | None = None
    actor: str | None = None


# Holds a mutable object so that `bind_actor` called in a copied context (a dependency run
# in a worker thread) still reaches the access-log line written by the middleware.
_request_fields: ContextVar[_RequestFields | None] = ContextVar(
    "billfold_request_fields", default=None
)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "info",
    *,
    stream: TextIO | None = None,
    processors: Sequence[Processor] = (),
) -> None:
    """Send every log record, structlog's and the standard library's, to `stream` (standard
    error by default) as one JSON object per line, at `level` and above.

    `processors` run on every structlog event before it leaves structlog (so other handlers,
    such as pytest's capture, see their result), and again on every record, the standard
    library's and tracebacks included, just before rendering. The application passes the
    PII masking processor here (the kit knows no domain); they must be idempotent.

    Calling it again replaces the previous configuration rather than adding a handler.
    """
    global _installed_handler, _direct
    level_number = LOG_LEVELS.get(level.lower())
    if level_number is None:
        raise ValueError(f"log level must be one of {sorted(LOG_LEVELS)}, got {level!r}")
    before_formatter: list[Processor] = [
        *_shared_processors(),
        structlog.processors.StackInfoRenderer(),
        *processors,
    ]
    chain: list[Processor] = [
        structlog.stdlib.filter_by_level,
        *before_formatter,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=chain,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                _note_processed,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _tracebacks,
                _unless_processed(processors),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    root.addHandler(handler)
    root.setLevel(level_number)
    _installed_handler = handler
    _direct = _DirectLine(
        chain=chain,
        chain_items=tuple(chain),
        handler=handler,
        processors=tuple(before_formatter),
        render=structlog.processors.JSONRenderer(),
    )


_PROCESSED = "_billfold_processed"


def _note_processed(_logger: Any, _method_name: str, event_dict: EventDict) -> EventDict:
    """Mark a structlog event the `processors` already ran on, unless it carries a traceback
    that only the formatter renders (`_tracebacks`): that text they have not seen."""
    if event_dict.get("_from_structlog") and "exc_info" not in event_dict:
        event_dict[_PROCESSED] = True
    return event_dict


def _unless_processed(processors: Sequence[Processor]) -> Processor:
    """`processors`, for the records that have not been through them (the standard
    library's, and tracebacks). Running them twice on the same event changes nothing (they
    are idempotent) but costs: masking every string is most of an access line's CPU."""

    def run(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        if event_dict.pop(_PROCESSED, False):
            return event_dict
        for processor in processors:
            event_dict = processor(logger, method_name, event_dict)  # type: ignore[assignment]
        return event_dict

    return run


def _as_dict(fields: _RequestFields) -> dict[str, str | None]:
    return {"tenant": fields.tenant, "actor": fields.actor}


def _bounded(value: str | uuid.UUID | None) -> str | None:
    return None if value is None else str(value)[:_FIELD_LENGTH_MAX]


def bind_actor(*, tenant_id: str | uuid.UUID | None, actor: str | None) -> None:
    """Record who is making the current request: every later log line of the request, and
    its access-log line, carry `tenant` and `actor`. For the auth layer to call."""
    tenant, who = _bounded(tenant_id), _bounded(actor)
    structlog.contextvars.bind_contextvars(tenant=tenant, actor=who)
    fields = _request_fields.get()
    if fields is not None:
        fields.tenant, fields.actor = tenant, who


class AccessLogMiddleware:
    """One `request` line per HTTP request: method, path, status, duration_ms (and the
    bound request_id, tenant, actor). The query string is left out: it may carry secrets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._logger = structlog.get_logger(ACCESS_LOGGER_NAME)
        self._stdlib_logger = logging.getLogger(ACCESS_LOGGER_NAME)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fields = _RequestFields()
        token = _request_fields.set(fields)
        started_ns = time.perf_counter_ns()
        status = 500  # what the client gets if the application raises before answering

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            _request_fields.reset(token)
            self._log(scope, fields, status=status, started_ns=started_ns)
            # Who made this request says nothing about the next one served in this context.
            structlog.contextvars.unbind_contextvars("tenant", "actor")

    def _log(self, scope: Scope, fields: _RequestFields, *, status: int, started_ns: int) -> None:
        duration_ms = (time.perf_counter_ns() - started_ns) / _NANOSECONDS_PER_MILLISECOND
        # Given explicitly only when known, so a value bound in this context is not hidden.
        who = {name: value for name, value in _as_dict(fields).items() if value is not None}
        line: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration_ms, 3),
            **who,
        }
        level = logging.ERROR if status >= 500 else logging.INFO
        if not _write_directly(self._stdlib_logger, level, line):
            (self._logger.error if status >= 500 else self._logger.info)("request", **line)


def _direct_line(logger: logging.Logger, level: int) -> _DirectLine | None:
    """How to write a line of `logger` at `level` without the standard library's logging,
    when the result is the same: structlog is still configured by `configure_logging`, the
    installed handler is the only handler and nothing filters. Otherwise (a test capturing
    logs, say) None."""
    direct = _direct
    if direct is None:
        return None
    configured = structlog.get_config()["processors"]
    if configured is not direct.chain or tuple(configured) != direct.chain_items:
        return None
    root = logging.root
    handlers = root.handlers
    if (
        len(handlers) != 1
        or handlers[0] is not direct.handler
        or root.filters
        or direct.handler.filters
        or level < direct.handler.level
        or not logger.isEnabledFor(level)
    ):
        return None
    # The record would climb to the root through each ancestor: none may keep, filter or
    # handle it on the way.
    ancestor: logging.Logger | None = logger
    while ancestor is not None and ancestor is not root:
        if ancestor.handlers or ancestor.filters or not ancestor.propagate or ancestor.disabled:
            return None
        ancestor = ancestor.parent
    return direct


def _write_directly(logger: logging.Logger, level: int, fields: dict[str, Any]) -> bool:
    """Write the access line `fields` as the `request` event, exactly as structlog and the
    installed handler would, but without a trip through the standard library's logging
    (two LogRecords, a caller lookup, a formatter): that was half of each line's CPU, paid
    on every request. False when that would not give the same result (`_direct_line`)."""
    direct = _direct_line(logger, level)
    if direct is None:
        return False
    method = "error" if level >= logging.ERROR else "info"
    event: EventDict = {**fields, "event": "request"}
    try:
        for processor in direct.processors:
            event = processor(logger, method, event)  # type: ignore[assignment]
    except structlog.DropEvent:  # as structlog does: a processor filtered the line out
        return True
    rendered = direct.render(logger, method, event)
    line = rendered.decode() if isinstance(rendered, bytes) else str(rendered)
    handler = direct.handler
    handler.acquire()
    try:
        handler.stream.write(f"{line}{handler.terminator}")
        handler.flush()
    except Exception:  # as the handler's own emit: report to stderr, never raise
        handler.handleError(logging.makeLogRecord({"msg": "request", "levelno": level}))
    finally:
        handler.release()
    return True
