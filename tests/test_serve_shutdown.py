"""`billfold serve` stops within `BILLFOLD_SHUTDOWN_GRACE_S` of a SIGTERM, live streams
open or not: uvicorn's graceful shutdown has no bound of its own, so a stopping server
waited for every open event stream to reach its limit (300 s by default), long past a
process manager's grace period (Kubernetes: 30 s), refusing new connections meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from billfold.identity.types import Scope
from billfold.migrations import upgrade
from cli_support import free_port
from identity.identity_support import bootstrap_tenant, create_key

GRACE_S = 1
STREAM_S = 120
"""Far longer than the test waits: only the grace can end the stream in time."""


def _wait_until_serving(base_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited before it served"
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def test_a_sigterm_ends_serve_within_the_grace_despite_an_open_stream(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/serve.db"
    upgrade(database_url)
    tenant = bootstrap_tenant(database_url, "Shutdown").tenant.id
    reader = create_key(database_url, tenant_id=tenant, scopes=[Scope.EVENTS_READ]).secret
    port = free_port()
    environment = {
        **os.environ,
        "BILLFOLD_DATABASE_URL": database_url,
        "BILLFOLD_PORT": str(port),
        "BILLFOLD_SHUTDOWN_GRACE_S": str(GRACE_S),
        "BILLFOLD_EVENTS_STREAM_DURATION_MAX_S": str(STREAM_S),
        "BILLFOLD_EMBEDDED_WORKER": "false",
    }
    base_url = f"http://127.0.0.1:{port}"
    streaming = threading.Event()

    def listen() -> None:
        headers = {"Authorization": f"Bearer {reader}"}
        try:
            # Reads wait as long as the stream lasts: the client must not be what closes it.
            timeout = httpx.Timeout(5, read=STREAM_S)
            with httpx.stream(
                "GET", f"{base_url}/v1/events/stream", headers=headers, timeout=timeout
            ) as answer:
                for _ in answer.iter_raw():
                    streaming.set()
        except httpx.HTTPError:
            pass  # cut by the stopping server, as it should be

    with subprocess.Popen(
        [sys.executable, "-m", "billfold.cli", "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
    ) as process:
        try:
            _wait_until_serving(base_url, process)
            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            assert streaming.wait(timeout=30), "the stream never started"
            stopped_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=GRACE_S + 20)
            took = time.monotonic() - stopped_at
        finally:
            if process.poll() is None:
                process.kill()
    assert took < GRACE_S + 10, took
