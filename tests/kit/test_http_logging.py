"""Structured logs: one JSON object per line, request id, tenant and actor bound, and one
access-log line per request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import structlog
from fastapi import Depends, FastAPI

from billfold.kit.errors import install_problem_handlers
from billfold.kit.http import logging as logging_module
from billfold.kit.http.logging import AccessLogMiddleware, bind_actor, configure_logging
from billfold.kit.http.request_id import REQUEST_ID_HEADER, RequestIdMiddleware


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Logging configured into a buffer; the process's logging restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        yield stream
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Billfold's lines (httpx, the test client, logs its requests too)."""
    parsed = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [line for line in parsed if line["logger"].startswith("billfold.")]


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line.get("logger") == "billfold.access"]


async def authenticated() -> None:
    bind_actor(tenant_id="ten_1", actor="key_async")


def authenticated_in_a_thread() -> None:
    bind_actor(tenant_id="ten_2", actor="key_sync")


def build_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/async", dependencies=[Depends(authenticated)])
    async def async_route() -> dict[str, str]:
        structlog.get_logger("billfold.test").info("inside", step=1)
        return {}

    @app.get("/sync", dependencies=[Depends(authenticated_in_a_thread)])
    def sync_route() -> dict[str, str]:
        return {}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://billfold.test")


def test_structlog_and_stdlib_records_are_json_lines(log_stream: io.StringIO) -> None:
    structlog.get_logger("billfold.test").info("hello", amount=5)
    logging.getLogger("billfold.stdlib").warning("careful %s", "now")
    logging.getLogger("billfold.stdlib").debug("below the level")
    first, second = lines(log_stream)
    assert (first["event"], first["amount"], first["level"]) == ("hello", 5, "info")
    assert (second["event"], second["level"]) == ("careful now", "warning")
    for line in (first, second):
        assert datetime.fromisoformat(line["timestamp"]).utcoffset() is not None


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("chatty")


def test_configuring_twice_does_not_duplicate_lines(log_stream: io.StringIO) -> None:
    configure_logging("info", stream=log_stream)
    structlog.get_logger("billfold.test").info("once")
    assert len(lines(log_stream)) == 1


@pytest.mark.anyio
async def test_each_request_has_one_access_line_with_its_id(log_stream: io.StringIO) -> None:
    async with client() as http:
        response = await http.get("/async?secret=1", headers={REQUEST_ID_HEADER: "req-7"})
    inside, access = lines(log_stream)
    assert inside["event"] == "inside"
    assert (inside["request_id"], inside["tenant"], inside["actor"]) == (
        "req-7",
        "ten_1",
        "key_async",
    )
    assert response.headers[REQUEST_ID_HEADER] == "req-7"
    assert access["event"] == "request"
    assert access["method"] == "GET"
    assert access["path"] == "/async"
    assert access["status"] == 200
    assert access["request_id"] == "req-7"
    assert (access["tenant"], access["actor"]) == ("ten_1", "key_async")
    assert isinstance(access["duration_ms"], float)
    assert access["duration_ms"] >= 0


@pytest.mark.anyio
async def test_an_actor_bound_in_a_worker_thread_reaches_the_access_line(
    log_stream: io.StringIO,
) -> None:
    async with client() as http:
        await http.get("/sync")
    (access,) = access_lines(log_stream)
    assert (access["tenant"], access["actor"]) == ("ten_2", "key_sync")


@pytest.mark.anyio
async def test_requests_do_not_inherit_each_others_actor(log_stream: io.StringIO) -> None:
    async with client() as http:
        await http.get("/async")
        await http.get("/no-such-route")
    first, second = access_lines(log_stream)
    assert first["actor"] == "key_async"
    assert second["status"] == 404
    assert "actor" not in second
    assert "tenant" not in second
    assert first["request_id"] != second["request_id"]


@pytest.mark.anyio
async def test_a_crash_is_logged_as_a_500_error(log_stream: io.StringIO) -> None:
    async with client() as http:
        response = await http.get("/crash")
    (access,) = access_lines(log_stream)
    assert (access["status"], access["level"]) == (500, "error")
    assert access["request_id"] == response.headers[REQUEST_ID_HEADER]


def test_processors_run_once_per_structlog_event_and_again_on_a_traceback(
    log_stream: io.StringIO,
) -> None:
    passes: list[str] = []

    def redact(_logger: object, _method: str, event_dict: Any) -> Any:
        passes.append(str(event_dict.get("event")))
        return {
            name: json.loads(json.dumps(value).replace("hunter2", "***"))
            for name, value in event_dict.items()
        }

    configure_logging("info", stream=log_stream, processors=[redact])
    log = structlog.get_logger("test")
    log.info("plain", password="hunter2")
    try:
        raise ValueError("the password was hunter2")
    except ValueError:
        log.exception("failed")
    logging.getLogger("stdlib").warning("stdlib hunter2")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["plain", "failed", "stdlib ***"]
    assert "hunter2" not in log_stream.getvalue()
    assert "***" in json.dumps(lines[1]["exception"])  # rendered by the formatter, then redacted
    # The structlog chain once per event; the formatter (each time a handler renders the
    # record: the suite's log scanner does too) only for the traceback and the standard
    # library's record, which the chain never saw.
    assert passes.count("plain") == 1
    assert passes.count("failed") >= 2 and passes.count("stdlib hunter2") >= 1


def _authenticate(authorization: str) -> None:
    api_key = authorization.removeprefix("Bearer ")
    raise RuntimeError(f"the key store is down ({len(api_key)})")


def test_a_traceback_shows_no_local_variable(log_stream: io.StringIO) -> None:
    """A request's locals hold its credentials: a traceback logs where it failed, never the
    values its frames held (structlog's `dict_tracebacks` logs them all)."""
    secret = "Bearer bf_test_s3cr3t"
    try:
        _authenticate(secret)
    except RuntimeError:
        logging.getLogger("billfold.stdlib").exception("authentication failed")
        structlog.get_logger("billfold.test").exception("authentication failed")
    first, second = lines(log_stream)
    assert "bf_test_s3cr3t" not in log_stream.getvalue()
    for line in (first, second):
        (error,) = line["exception"]
        assert error["exc_value"] == "the key store is down (14)"
        assert [frame["name"] for frame in error["frames"]][-1] == "_authenticate"
        assert all("locals" not in frame for frame in error["frames"])


def only_the_installed_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    """The root logger as in production: the handler `configure_logging` installed, alone
    (pytest adds its own, which keeps access lines in logging)."""
    installed = logging_module._installed_handler
    assert installed is not None
    monkeypatch.setattr(logging.root, "handlers", [installed])


class _Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/async", "/crash", "/no-such-route"])
async def test_an_access_line_written_directly_is_the_line_logging_would_write(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """With the installed handler alone on the root logger, the access line skips the
    standard library's logging; with another handler there (pytest's capture, a scanner)
    it goes through it, so that handler sees it too. Both lines are the same."""

    def redact(_logger: object, _method: str, event_dict: Any) -> Any:
        return {name: str(value).replace("key_", "k_") for name, value in event_dict.items()}

    configure_logging("info", stream=log_stream, processors=[redact])
    only_the_installed_handler(monkeypatch)
    made: list[str] = []
    make_record = logging.Logger.makeRecord

    def counted(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(self.name)
        return make_record(self, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counted)
    async with client() as http:
        await http.get(path)
        assert "billfold.access" not in made  # written directly
        other = _Collecting()
        logging.root.addHandler(other)
        await http.get(path)
    direct, through_logging = access_lines(log_stream)
    assert [record.name for record in other.records].count("billfold.access") == 1
    for line in (direct, through_logging):
        assert datetime.fromisoformat(line.pop("timestamp")).utcoffset() is not None
        float(line.pop("duration_ms"))
        assert line.pop("request_id")
    assert direct == through_logging
    assert direct["path"] == path
    if path == "/async":
        assert direct["actor"] == "k_async"  # the configured processors ran once


def test_a_direct_line_is_not_written_when_structlog_was_configured_since(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_the_installed_handler(monkeypatch)
    access = logging.getLogger("billfold.access")
    assert logging_module._direct_line(access, logging.INFO) is not None
    assert logging_module._direct_line(access, logging.DEBUG) is None  # below the level
    with structlog.testing.capture_logs():
        assert logging_module._direct_line(access, logging.INFO) is None


def test_a_handler_or_filter_on_the_way_to_the_root_keeps_lines_in_logging(
    log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_the_installed_handler(monkeypatch)
    access = logging.getLogger("billfold.access")
    parent = logging.getLogger("billfold")
    assert logging_module._direct_line(access, logging.INFO) is not None
    other = _Collecting()
    parent.addHandler(other)
    try:
        assert logging_module._direct_line(access, logging.INFO) is None
    finally:
        parent.removeHandler(other)
    monkeypatch.setattr(parent, "propagate", False)
    assert logging_module._direct_line(access, logging.INFO) is None
