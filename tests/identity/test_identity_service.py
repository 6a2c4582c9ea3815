"""Identity's service and key format, below HTTP: time-dependent rules with a chosen clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.identity import service
from billfold.identity.credentials import (
    API_KEY_LENGTH_MAX,
    hash_api_key,
    key_prefix,
    mint_api_key,
    parse_api_key,
)
from billfold.identity.errors import (
    ApiKeyLimitReached,
    InvalidExpiry,
    InvalidName,
    LiveOnlyScope,
    NotAuthenticated,
    TenantNotFound,
)
from billfold.identity.models import ApiKey
from billfold.identity.types import Mode, Scope
from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
from billfold.kit.ids import new_id

pytestmark = pytest.mark.anyio
SECOND_NS = 1_000_000_000
START_NS = 1_800_000_000 * SECOND_NS


@pytest.fixture
async def unit_of_work(database_url: str) -> AsyncIterator[UnitOfWork]:
    engine = create_engine(parse_database_url(database_url), pool_size=2)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()


async def _tenant_and_key(unit_of_work: UnitOfWork, **fields: object) -> service.CreatedApiKey:
    async with unit_of_work.begin() as session:
        tenant = await service.create_tenant(session, name="T", now_ns=START_NS)
        arguments: dict[str, object] = {
            "name": "k",
            "mode": Mode.TEST,
            "scopes": [Scope.LEDGER_READ],
            "expires_at_ns": None,
            "now_ns": START_NS,
        } | fields
        return await service.create_api_key(session, tenant_id=tenant.id, **arguments)  # type: ignore[arg-type]


async def _verify(unit_of_work: UnitOfWork, key: str, *, now_ns: int) -> service.VerifiedApiKey:
    async with unit_of_work.begin() as session:
        return await service.verify_api_key(session, presented=key, now_ns=now_ns)


async def _last_used(unit_of_work: UnitOfWork, api_key_id: uuid.UUID) -> int | None:
    async with unit_of_work.begin() as session:
        api_key = await session.get(ApiKey, api_key_id)
        assert api_key is not None
        return api_key.last_used_at


async def test_last_used_is_written_at_most_once_a_minute(unit_of_work: UnitOfWork) -> None:
    created = await _tenant_and_key(unit_of_work)
    key_id = created.api_key.id
    written_at: list[int | None] = []
    for offset_s in (0, 30, 59, 60, 61, 125):
        now_ns = START_NS + offset_s * SECOND_NS
        verified = await _verify(unit_of_work, created.secret, now_ns=now_ns)
        if verified.last_use_due:
            async with unit_of_work.begin() as session:
                await service.record_api_key_use(session, api_key_id=key_id, now_ns=now_ns)
        written_at.append(await _last_used(unit_of_work, key_id))
    at = [None if value is None else (value - START_NS) // SECOND_NS for value in written_at]
    assert at == [0, 0, 0, 60, 60, 125]


async def test_recording_use_twice_in_the_minute_writes_once(unit_of_work: UnitOfWork) -> None:
    created = await _tenant_and_key(unit_of_work)
    for now_ns in (START_NS, START_NS + 10 * SECOND_NS):
        # Two requests that both saw a stale time: the UPDATE's condition lets one through.
        async with unit_of_work.begin() as session:
            await service.record_api_key_use(session, api_key_id=created.api_key.id, now_ns=now_ns)
    assert await _last_used(unit_of_work, created.api_key.id) == START_NS


async def test_a_key_works_until_the_instant_it_expires(unit_of_work: UnitOfWork) -> None:
    expires_at_ns = START_NS + 3600 * SECOND_NS
    created = await _tenant_and_key(unit_of_work, expires_at_ns=expires_at_ns)
    verified = await _verify(unit_of_work, created.secret, now_ns=expires_at_ns - 1)
    assert verified.principal.scopes == frozenset({Scope.LEDGER_READ})
    assert verified.principal.mode is Mode.TEST
    with pytest.raises(NotAuthenticated):
        await _verify(unit_of_work, created.secret, now_ns=expires_at_ns)


async def test_creation_refuses_bad_expiry_name_and_tenant(unit_of_work: UnitOfWork) -> None:
    with pytest.raises(InvalidExpiry):
        await _tenant_and_key(unit_of_work, expires_at_ns=START_NS)
    with pytest.raises(InvalidName):
        await _tenant_and_key(unit_of_work, name="x" * 101)
    async with unit_of_work.begin() as session:
        with pytest.raises(TenantNotFound):
            await service.create_api_key(
                session,
                tenant_id=new_id(),
                name="k",
                mode=Mode.LIVE,
                scopes=[Scope.LEDGER_READ],
                expires_at_ns=None,
                now_ns=START_NS,
            )


async def test_a_test_key_is_refused_the_live_only_scopes(unit_of_work: UnitOfWork) -> None:
    """Both the API (`grant_api_key`) and `billfold apikey create` make keys here."""
    for scopes in ([Scope.AUDIT_READ], [Scope.LEDGER_READ, Scope.AUDIT_READ]):
        with pytest.raises(LiveOnlyScope) as refused:
            await _tenant_and_key(unit_of_work, scopes=scopes)
        assert refused.value.extensions == {"scopes": ["audit:read"], "mode": "test"}
    live = await _tenant_and_key(unit_of_work, mode=Mode.LIVE, scopes=[Scope.AUDIT_READ])
    assert live.secret.startswith("bf_live_")
    assert service.scopes_of(live.api_key) == {Scope.AUDIT_READ}


async def test_a_tenant_holds_a_bounded_number_of_unrevoked_keys(
    unit_of_work: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "API_KEYS_PER_TENANT_MAX", 2)
    first = await _tenant_and_key(unit_of_work)

    async def another(session: AsyncSession) -> service.CreatedApiKey:
        return await service.create_api_key(
            session,
            tenant_id=first.api_key.tenant_id,
            name="k",
            mode=Mode.TEST,
            scopes=[Scope.LEDGER_READ],
            expires_at_ns=None,
            now_ns=START_NS,
        )

    async with unit_of_work.begin() as session:
        await another(session)
        with pytest.raises(ApiKeyLimitReached):
            await another(session)
    async with unit_of_work.begin() as session:
        await service.revoke_api_key_any_tenant(
            session, api_key_id=first.api_key.id, now_ns=START_NS
        )
        await another(session)  # a revoked key frees its place


def test_a_key_parses_back_to_its_mode_and_id() -> None:
    key_id = new_id()
    for mode in Mode:
        key = mint_api_key(mode=mode, api_key_id=key_id)
        assert key.startswith(key_prefix(mode=mode, api_key_id=key_id) + "_")
        assert len(key) == API_KEY_LENGTH_MAX
        parsed = parse_api_key(key)
        assert parsed is not None
        assert (parsed.mode, parsed.api_key_id) == (mode, key_id)
    assert mint_api_key(mode=Mode.TEST, api_key_id=key_id) != mint_api_key(
        mode=Mode.TEST, api_key_id=key_id
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bf_test_",
        "bf_prod_" + "a" * 26 + "_" + "b" * 43,
        "BF_TEST_" + "a" * 26 + "_" + "b" * 43,
        "bf_test_" + "a" * 26 + "_" + "b" * 42,
        "bf_test_" + "a" * 26 + "_" + "b" * 44,
        "bf_test_" + "1" * 26 + "_" + "b" * 43,
        "bf_test_" + "a" * 26 + "_" + "b" * 42 + "=",
    ],
)
def test_anything_but_the_exact_format_is_refused_before_lookup(text: str) -> None:
    assert parse_api_key(text) is None


def test_the_hash_covers_the_whole_key_prefix_included() -> None:
    key = mint_api_key(mode=Mode.TEST, api_key_id=new_id())
    assert hash_api_key(key) != hash_api_key(key.replace("bf_test_", "bf_live_", 1))
    assert len(hash_api_key(key)) == 32
