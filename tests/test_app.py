"""The application factory: health, readiness, problem+json, OpenAPI; on both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from billfold import __version__
from billfold.app import create_app
from billfold.kit.settings import Settings


def test_health_and_readiness_answer_on_a_migrated_database(database_url: str) -> None:
    with TestClient(create_app(Settings(database_url=database_url))) as client:
        health = client.get("/healthz")
        ready = client.get("/readyz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["database"] in {"sqlite", "postgresql"}


def test_first_start_on_sqlite_creates_and_migrates_the_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{path}"))) as client:
        assert client.get("/readyz").status_code == 200
    assert path.exists()


def test_readiness_is_a_503_problem_when_the_database_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    with TestClient(create_app(Settings(database_url=f"sqlite:///{path}"))) as client:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.mkdir()  # a directory where the database file was: SQLite cannot reopen it
        response = client.get("/readyz")
        # The open connections still see their (unlinked) file, so readiness may hold;
        # what must never happen is a 5xx that is not problem+json.
        if response.status_code != 200:
            assert response.status_code == 503
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["code"] == "service_unavailable"


def test_unknown_routes_and_methods_are_problem_documents(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/a.db"))) as client:
        missing = client.get("/v1/nothing-here")
        wrong_method = client.post("/healthz")
        openapi = client.get("/openapi.json")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    assert missing.json()["status"] == 404
    assert wrong_method.status_code == 405
    assert wrong_method.json()["code"] == "method_not_allowed"
    assert openapi.json()["openapi"].startswith("3.1")
    assert {"/healthz", "/readyz"} <= set(openapi.json()["paths"])


def test_the_command_prints_its_version() -> None:
    command = [sys.executable, "-m", "billfold.cli", "--version"]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == f"billfold {__version__}"
