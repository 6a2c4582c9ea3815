"""The risk context of a request (client IP behind trusted proxies, the country header),
the lost-chargeback label, and migration 0021."""

from __future__ import annotations

from types import SimpleNamespace

from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.kit.ids import parse_id
from billfold.migrations import alembic_config, upgrade
from billfold.risk.gate import client_ip, ip_country
from billfold.risk.models import RiskLabel
from payments.payments_support import World
from payments.risk_support import in_db, install
from payments.test_payments_migration import _differences


def _request(peer: str | None, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(
        client=None if peer is None else SimpleNamespace(host=peer),
        headers={name.lower(): value for name, value in headers.items()},
    )


def test_the_client_ip_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 10.0.0.2"}
    assert client_ip(_request("10.0.0.1", **forwarded), trusted_proxies=frozenset()) == "10.0.0.1"
    trusted = frozenset({"10.0.0.1"})
    assert client_ip(_request("10.0.0.1", **forwarded), trusted_proxies=trusted) == "203.0.113.9"
    assert client_ip(_request("10.0.0.7", **forwarded), trusted_proxies=trusted) == "10.0.0.7"
    spoofed = {"X-Forwarded-For": "not-an-address"}
    assert client_ip(_request("10.0.0.1", **spoofed), trusted_proxies=trusted) == "10.0.0.1"
    assert client_ip(_request(None), trusted_proxies=trusted) is None
    assert client_ip(_request("testclient"), trusted_proxies=trusted) is None


def test_the_country_comes_only_from_the_configured_header() -> None:
    request = _request("10.0.0.1", **{"CF-IPCountry": "de"})
    assert ip_country(request, header=None) is None
    assert ip_country(request, header="cf-ipcountry") == "DE"
    assert (
        ip_country(_request("10.0.0.1", **{"CF-IPCountry": "XXX"}), header="cf-ipcountry") is None
    )


@given(st.text(max_size=80), st.text(max_size=80))
def test_parsing_request_context_never_fails(forwarded: str, country: str) -> None:
    request = _request("10.0.0.1", **{"X-Forwarded-For": forwarded, "X-Country": country})
    ip = client_ip(request, trusted_proxies=frozenset({"10.0.0.1"}))
    assert ip is not None and len(ip) <= 45
    found = ip_country(request, header="x-country")
    assert found is None or (len(found) == 2 and found.isupper())


def test_a_lost_chargeback_labels_the_payment_fraud(database_url: str) -> None:
    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        sent = world.client.post(
            "/v1/me/p2p",
            json={"recipient": bob.handle, "amount": 600, "currency": "USD"},
            headers=ann.auth,
        ).json()
        opened = world.client.post(
            f"/v1/payments/{sent['id']}/disputes", json={"amount": 600}, headers=world.api
        )
        assert opened.status_code == 201, opened.text
        dispute = opened.json()["disputes"][0]["id"]
        lost = world.client.post(
            f"/v1/disputes/{dispute}/resolve", json={"outcome": "lost"}, headers=world.api
        )
        assert lost.status_code == 200, lost.text

        async def labels(session: AsyncSession) -> list[RiskLabel]:
            statement = select(RiskLabel).where(RiskLabel.reference == sent["id"])
            return list((await session.execute(statement)).scalars())

        [label] = in_db(world, labels)
        assert (label.fraud, label.source) == (True, "chargeback_lost")
        assert label.decision_id == parse_id("rdc", sent["risk_decision_id"])


def test_the_risk_migration_downgrades_and_upgrades_again(isolated_database_url: str) -> None:
    command.downgrade(alembic_config(isolated_database_url), "0018_risk_core")
    missing = repr(_differences(isolated_database_url))
    for name in ("risk_decision_id", "parked_instrument"):
        assert name in missing
    upgrade(isolated_database_url)
    assert _differences(isolated_database_url) == []


def test_a_frozen_wallet_refuses_cleanly(database_url: str) -> None:
    import functools

    from billfold.ledger.types import AccountStatus
    from billfold.wallets.service import ledger_tenant_of
    from payments.payments_support import problem

    with World(database_url, fees=False) as world:
        install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        wallets = world.client.get("/v1/me/wallets", headers=ann.auth).json()["items"]
        [usd] = [wallet for wallet in wallets if wallet["currency"] == "USD"]
        world.client.portal.call(
            functools.partial(
                world.ledger.set_account_status,
                tenant_id=ledger_tenant_of(world.tenant_id, "test"),
                account_id=parse_id("wal", usd["id"]),
                status=AccountStatus.FROZEN,
            )
        )
        refused = world.client.post(
            "/v1/me/p2p",
            json={"recipient": bob.handle, "amount": 300, "currency": "USD"},
            headers=ann.auth,
        )
        problem(refused, 409, "account_frozen")
        assert world.wallet(bob)["available"] == 0


def test_a_request_signed_by_a_bound_device_names_the_device(database_url: str) -> None:
    import json

    from identity.users.users_support import DeviceKey, bind_device

    with World(database_url, fees=False) as world:
        decider = install(world)
        ann, bob = world.user(), world.user()
        world.fund(ann, 1_000)
        key = DeviceKey("ed25519")
        device = bind_device(world.client, ann.token, key)
        body = json.dumps({"recipient": bob.handle, "amount": 300, "currency": "USD"}).encode()
        now_s = world.app.state.users_config.clock.now_ns() // 1_000_000_000

        def signed(payload: bytes, signer: DeviceKey) -> dict[str, str]:
            return {
                **ann.auth,
                "Content-Type": "application/json",
                **signer.headers(
                    device_id=device["id"],
                    method="POST",
                    target="/v1/me/p2p",
                    body=payload,
                    timestamp_s=now_s,
                ),
            }

        sent = world.client.post("/v1/me/p2p", content=body, headers=signed(body, key))
        assert sent.status_code == 201, sent.text
        assert decider.seen[-1].device_id == parse_id("dev", device["id"])
        forged = world.client.post(
            "/v1/me/p2p", content=body, headers=signed(body, DeviceKey("ed25519"))
        )
        assert forged.status_code in (401, 403), forged.text
        unsigned = world.client.post(
            "/v1/me/p2p", content=body, headers={**ann.auth, "Content-Type": "application/json"}
        )
        assert unsigned.status_code == 201 and decider.seen[-1].device_id is None
        assert world.wallet(bob)["available"] == 600
