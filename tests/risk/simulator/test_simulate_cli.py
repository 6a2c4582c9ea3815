"""`billfold simulate` against a real server on the loopback address: the sandbox notifies
the server over HTTP and its embedded worker applies the notifications, as in production."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from billfold import cli
from billfold.app import create_app
from billfold.identity.types import Scope
from billfold.kit.settings import Settings
from billfold.risk.simulator.in_process import SIMULATION_SCOPES
from cli_support import free_port
from identity.identity_support import bootstrap_tenant, create_key
from identity.users.users_support import MASTER_KEY, users_config

START_TIMEOUT_S = 30.0


@contextmanager
def _serving(database_url: str) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(
        Settings(
            database_url=database_url,
            embedded_worker=True,
            master_key=MASTER_KEY,
            payments_sandbox_webhook_url=url,
            payments_sandbox_notification_delay_s=0,
            rate_limit_sign_in_requests=10_000,
            log_level="warning",
        )
    )
    app.state.users_config = users_config()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)


def test_simulate_plays_a_workload_against_a_server_and_summarises_it(
    database_url: str, tmp_path: Path
) -> None:
    tenant = bootstrap_tenant(database_url, name="Simulated")
    scopes: list[Scope] = list(SIMULATION_SCOPES)
    key = create_key(database_url, tenant_id=tenant.tenant.id, scopes=scopes).secret
    out = tmp_path / "sim.jsonl"
    arguments = ["--seed", "5", "--customers", "10", "--merchants", "2", "--hours", "2"]
    with _serving(database_url) as url:
        result = CliRunner().invoke(
            cli.app,
            [
                "simulate",
                "--url",
                url,
                "--api-key",
                key,
                *arguments,
                "--fraud-rate",
                "0.2",
                "--concurrency",
                "4",
                "--out",
                str(out),
                "--label",
            ],
        )
    assert result.exit_code == 0, result.output
    for title in ("Actions by kind", "Fraud by pattern", "Outcomes", "labels posted"):
        assert title in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    funding = [r for r in records if r["phase"] == "setup" and r["kind"] == "funding"]
    assert len(funding) == 10 and all(r["state"] == "succeeded" for r in funding)
    run = [r for r in records if r["phase"] == "run"]
    assert run and all(r["status"] is not None for r in run)
    assert any(r["fraud"] for r in run)
    assert any(r.get("labelled") for r in run)


def test_simulate_refuses_a_live_key() -> None:
    result = CliRunner().invoke(
        cli.app,
        ["simulate", "--url", "http://127.0.0.1:9", "--api-key", "bf_live_x", "--customers", "10"],
    )
    assert result.exit_code == 2
    assert "test-mode" in result.output
