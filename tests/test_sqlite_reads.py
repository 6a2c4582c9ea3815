"""SQLite has one writer. Every GET route reads in a deferred transaction (`UnitOfWork.read`),
credential checks included, so a long write elsewhere never holds up a read (WAL readers
see the last commit meanwhile). Before, each began `BEGIN IMMEDIATE`: every GET queued
for the write lock behind the embedded worker's and the API's writes, and failed after
the 30 s busy timeout."""

from __future__ import annotations

import functools
import re
import uuid

import pytest

from billfold.identity.operators.permissions import Role
from billfold.identity.types import Mode, Scope
from identity.identity_support import create_key
from identity.operators.operators_support import operator
from payments.payments_support import World
from sqlite_support import done_while_locked

WRITING_READS = {
    "/v1/users/{user_id}/pii": "a reveal in the clear is written to the audit log",
    "/v1/users/{user_id}/export": "an export is written to the audit log",
    "/v1/events/stream": "a stream, which ends only after minutes: its polls are checked by"
    " tests/events/test_stream_sqlite_reads.py",
}
"""GET routes that write on purpose, or are checked elsewhere, and why."""

_PATH_PARAMETER = re.compile(r"{([a-z_]+)}")


def _concrete(path: str) -> str:
    """`path` with a well-formed id that names nothing for each parameter (a 404 still
    runs the route's transaction)."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        prefix = {"user_id": "usr", "operator_id": "opr", "approval_id": "apr"}.get(name)
        return f"{prefix or 'x'}_{uuid.uuid4().hex}"

    return _PATH_PARAMETER.sub(fill, path)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_get_route_reads_without_the_write_lock(isolated_database_url: str) -> None:
    url = isolated_database_url
    with World(url) as world:
        live_key = create_key(url, tenant_id=world.tenant_id, scopes=list(Scope), mode=Mode.LIVE)
        back_office = operator(url, tenant_id=world.tenant_id, roles=list(Role))
        user = world.user()
        credentials = {
            "ApiKey": f"Bearer {live_key.secret}",
            "UserAccessToken": f"Bearer {user.token}",
            "OperatorSession": f"Bearer {back_office.token}",
        }
        # An API key's use is written once a minute (`last_used_at`): its first one first.
        warm = world.client.get("/v1/api-keys", headers={"Authorization": credentials["ApiKey"]})
        assert warm.status_code == 200, warm.text
        paths = world.client.get("/openapi.json").json()["paths"]
        waited = []
        for path, item in paths.items():
            operation = item.get("get")
            if operation is None or path in WRITING_READS:
                continue
            schemes = [name for need in operation.get("security", []) for name in need]
            auth = credentials[schemes[-1]] if schemes else ""
            read = functools.partial(
                world.client.get, _concrete(path), headers={"Authorization": auth}
            )
            if not done_while_locked(url, read):
                waited.append(path)
        assert waited == []
