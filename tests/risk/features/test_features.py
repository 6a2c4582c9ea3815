"""Every feature of the catalogue changes as it should when movements are recorded (and
user facts or security events change), over each counter backend (memory, Redis, the
database) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import statistics
import uuid
from collections.abc import Awaitable, Callable

import pytest

from billfold.identity.security_events import SecurityEventType
from billfold.kit.ids import format_id
from billfold.risk.features import repository
from billfold.risk.features.catalogue import FEATURES
from billfold.risk.features.ip_countries import IpCountryTable
from billfold.risk.features.models import RiskProfile
from billfold.risk.types import MovementKind
from billfold.wallets.models import HolderTier
from risk.features.features_support import (
    DAY_NS,
    HOUR_NS,
    MINUTE_NS,
    SECOND_NS,
    T0_NS,
    World,
    open_world,
)

Scenario = Callable[[World], Awaitable[None]]


def run(
    database_url: str, counters: str, tenant_id: uuid.UUID, scenario: Scenario, **options: object
) -> None:
    async def go() -> None:
        async with open_world(database_url, counters, tenant_id=tenant_id, **options) as world:  # type: ignore[arg-type]
            await scenario(world)

    asyncio.run(go())


def test_compute_returns_exactly_the_catalogue_with_its_types(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    python_types = {"bool": bool, "int": int, "float": float, "string": str}

    async def scenario(world: World) -> None:
        assert world.computer.names == frozenset(FEATURES)
        for movement in (world.movement(), world.movement(user_id=None, payee="mer_x")):
            features = await world.features(movement)
            assert set(features) == set(FEATURES)
            for name, spec in FEATURES.items():
                assert type(features[name]) is python_types[spec.type], name

    run(database_url, counters, tenant_id, scenario)


def test_the_movement_itself(database_url: str, counters: str, tenant_id: uuid.UUID) -> None:
    async def scenario(world: World) -> None:
        features = await world.features(
            world.movement(kind=MovementKind.WITHDRAWAL, amount=12_345, currency="JPY")
        )
        assert features["kind"] == "withdrawal"
        assert features["amount"] == 12_345
        assert features["currency"] == "JPY"
        assert features["amount_major"] == 12_345.0  # JPY has no minor unit
        euro = await world.features(world.movement(amount=12_345))
        assert euro["amount_major"] == 123.45
        dinar = await world.features(world.movement(amount=12_345, currency="BHD"))
        assert dinar["amount_major"] == 12.345
        # T0 is Wednesday 2026-11-18 11:06:40 UTC; 20 hours later it is Thursday 07:06.
        assert (euro["hour_of_day"], euro["day_of_week"]) == (11, 2)
        later = await world.features(world.movement(occurred_at_ns=T0_NS + 20 * HOUR_NS))
        assert (later["hour_of_day"], later["day_of_week"]) == (7, 3)
        assert euro["has_device"] is False and euro["has_ip"] is False
        both = await world.features(world.movement(device_id=uuid.uuid4(), ip="192.0.2.1"))
        assert both["has_device"] is True and both["has_ip"] is True

    run(database_url, counters, tenant_id, scenario)


def test_user_velocity_counts_every_currency_and_sums_the_movements_one(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    async def scenario(world: World) -> None:
        first = await world.features(world.movement())
        assert [first[f"user_count_{w}"] for w in ("1m", "1h", "24h", "30d")] == [0, 0, 0, 0]
        await world.record(world.movement(amount=100, occurred_at_ns=T0_NS - 10 * DAY_NS))
        await world.record(world.movement(amount=200, occurred_at_ns=T0_NS - 5 * HOUR_NS))
        await world.record(world.movement(amount=400, occurred_at_ns=T0_NS - 10 * MINUTE_NS))
        await world.record(world.movement(amount=800, occurred_at_ns=T0_NS - 20 * SECOND_NS))
        await world.record(world.movement(amount=5000, currency="USD", occurred_at_ns=T0_NS))
        features = await world.features(world.movement())
        counts = [features[f"user_count_{w}"] for w in ("1m", "1h", "24h", "30d")]
        amounts = [features[f"user_amount_{w}"] for w in ("1m", "1h", "24h", "30d")]
        assert counts == [2, 3, 4, 5]  # the USD movement counts…
        assert amounts == [800, 1200, 1400, 1500]  # …but is not summed with euros
        dollars = await world.features(world.movement(currency="USD"))
        assert dollars["user_amount_1m"] == 5000
        # Another user of the tenant starts from nothing.
        other = await world.features(world.movement(user_id=await world.add_user()))
        assert other["user_count_30d"] == 0

    run(database_url, counters, tenant_id, scenario)


@pytest.mark.parametrize("subject", ["device", "payee", "ip"])
def test_device_payee_and_ip_velocity(
    database_url: str, counters: str, tenant_id: uuid.UUID, subject: str
) -> None:
    values = {"device": uuid.uuid4(), "payee": "mer_" + "ab" * 16, "ip": "2001:db8::7"}
    field = {"device": "device_id", "payee": "payee", "ip": "ip"}[subject]

    async def scenario(world: World) -> None:
        with_subject = world.movement(**{field: values[subject]})
        assert (await world.features(with_subject))[f"{subject}_count_24h"] == 0
        # Two different users through the same device / to the same payee / from the IP.
        second_user = await world.add_user()
        await world.record(
            world.movement(
                amount=300, occurred_at_ns=T0_NS - 2 * HOUR_NS, **{field: values[subject]}
            )
        )
        await world.record(
            world.movement(
                user_id=second_user,
                amount=700,
                occurred_at_ns=T0_NS - 30 * SECOND_NS,
                **{field: values[subject]},
            )
        )
        await world.record(world.movement(amount=999))  # without the subject
        features = await world.features(with_subject)
        assert features[f"{subject}_count_1m"] == 1
        assert features[f"{subject}_count_1h"] == 1
        assert features[f"{subject}_count_24h"] == 2
        assert features[f"{subject}_amount_24h"] == 1000
        assert features[f"{subject}_amount_30d"] == 1000
        without = await world.features(world.movement())
        assert without[f"{subject}_count_24h"] == 0
        assert without[f"{subject}_amount_24h"] == 0

    run(database_url, counters, tenant_id, scenario)


def test_money_received_by_the_user_recently(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    async def scenario(world: World) -> None:
        mule = await world.add_user()
        payer = await world.add_user()
        withdrawal = world.movement(
            user_id=mule, kind=MovementKind.WITHDRAWAL, payee="provider:bank"
        )
        assert (await world.features(withdrawal))["user_received_amount_24h"] == 0
        to_mule = format_id("usr", mule)
        await world.record(
            world.movement(
                user_id=payer, payee=to_mule, amount=40_000, occurred_at_ns=T0_NS - HOUR_NS
            )
        )
        await world.record(
            world.movement(
                user_id=mule,
                kind=MovementKind.TOP_UP,
                payee="provider:card",
                amount=2_500,
                occurred_at_ns=T0_NS - MINUTE_NS,
            )
        )
        await world.record(
            world.movement(
                user_id=payer,
                payee=to_mule,
                amount=9_999,
                currency="USD",
                occurred_at_ns=T0_NS - MINUTE_NS,
            )
        )
        await world.record(
            world.movement(
                user_id=payer, payee=to_mule, amount=1, occurred_at_ns=T0_NS - 2 * DAY_NS
            )
        )
        assert (await world.features(withdrawal))["user_received_amount_24h"] == 42_500
        # The payer received nothing.
        assert (await world.features(world.movement(user_id=payer)))[
            "user_received_amount_24h"
        ] == 0
        # A day later it has left the window.
        tomorrow = world.movement(user_id=mule, occurred_at_ns=T0_NS + DAY_NS)
        assert (await world.features(tomorrow))["user_received_amount_24h"] == 0

    run(database_url, counters, tenant_id, scenario)


def test_amount_zscore_against_the_users_own_history(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    past = [1000, 1200, 800, 1100, 900]

    async def scenario(world: World) -> None:
        big = world.movement(amount=5000)
        for index, amount in enumerate(past[:4]):
            await world.record(
                world.movement(amount=amount, occurred_at_ns=T0_NS - (index + 1) * DAY_NS)
            )
            features = await world.features(big)
            assert features["user_history_count"] == index + 1
            assert features["amount_zscore"] == 0.0  # fewer than 5
        await world.record(world.movement(amount=past[4], occurred_at_ns=T0_NS - 40 * DAY_NS))
        features = await world.features(big)
        assert features["user_history_count"] == 5  # all time, not 30 days
        expected = (5000 - statistics.fmean(past)) / statistics.pstdev(past)
        assert features["amount_zscore"] == pytest.approx(expected)
        typical = await world.features(world.movement(amount=1000))
        assert typical["amount_zscore"] == pytest.approx(0.0)
        # Other currencies keep their own history.
        dollars = await world.features(world.movement(currency="USD", amount=5000))
        assert dollars["user_history_count"] == 0 and dollars["amount_zscore"] == 0.0

    run(database_url, counters, tenant_id, scenario)


def test_new_device_and_new_payee(database_url: str, counters: str, tenant_id: uuid.UUID) -> None:
    device, payee = uuid.uuid4(), "usr_" + "cd" * 16

    async def scenario(world: World) -> None:
        movement = world.movement(device_id=device, payee=payee)
        features = await world.features(movement)
        assert features["new_device"] is True and features["new_payee"] is True
        await world.record(movement)
        features = await world.features(
            world.movement(device_id=device, payee=payee, occurred_at_ns=T0_NS + DAY_NS)
        )
        assert features["new_device"] is False and features["new_payee"] is False
        # Another device and payee are new; the same ones are new for another user.
        other = await world.features(
            world.movement(device_id=uuid.uuid4(), payee="mer_" + "ef" * 16)
        )
        assert other["new_device"] is True and other["new_payee"] is True
        stranger = await world.features(
            world.movement(user_id=await world.add_user(), device_id=device, payee=payee)
        )
        assert stranger["new_device"] is True and stranger["new_payee"] is True
        # No device, no payee: nothing is new.
        bare = await world.features(world.movement())
        assert bare["new_device"] is False and bare["new_payee"] is False

    run(database_url, counters, tenant_id, scenario)


def test_account_age_and_kyc_tier(database_url: str, counters: str, tenant_id: uuid.UUID) -> None:
    async def scenario(world: World) -> None:
        user = await world.add_user(created_at_ns=T0_NS - 2 * DAY_NS - 12 * HOUR_NS)
        features = await world.features(world.movement(user_id=user))
        assert features["account_age_days"] == pytest.approx(2.5)
        assert features["kyc_tier"] == 1  # never assessed: the default tier
        later = await world.features(world.movement(user_id=user, occurred_at_ns=T0_NS + DAY_NS))
        assert later["account_age_days"] == pytest.approx(3.5)
        async with world.unit_of_work.begin() as session:
            session.add(
                HolderTier(user_id=user, tenant_id=world.tenant_id, tier=3, updated_at=T0_NS)
            )
        assert (await world.features(world.movement(user_id=user)))["kyc_tier"] == 3
        nobody = await world.features(world.movement(user_id=None, payee="mer_x"))
        assert nobody["account_age_days"] == -1.0 and nobody["kyc_tier"] == -1

    run(database_url, counters, tenant_id, scenario)


def test_countries_of_the_ip_and_of_residence(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    table = IpCountryTable([("198.51.100.0/24", "FR"), ("203.0.113.0/24", "AU")])

    async def scenario(world: World) -> None:
        french_ip = world.movement(ip="198.51.100.9")
        features = await world.features(french_ip)
        assert features["ip_country"] == "FR" and features["residence_country"] == ""
        assert features["ip_country_mismatch"] is False  # residence unknown
        async with world.unit_of_work.begin() as session:
            await repository.set_profile(
                session,
                tenant_id=world.tenant_id,
                mode="test",
                user_id=world.user_id,
                residence_country="FR",
                now_ns=T0_NS,
            )
        features = await world.features(french_ip)
        assert features["residence_country"] == "FR" and features["ip_country_mismatch"] is False
        features = await world.features(world.movement(ip="203.0.113.5"))
        assert features["ip_country"] == "AU" and features["ip_country_mismatch"] is True
        # The caller's country wins over the table.
        features = await world.features(world.movement(ip="198.51.100.9", ip_country="de"))
        assert features["ip_country"] == "DE" and features["ip_country_mismatch"] is True
        unknown = await world.features(world.movement(ip="192.0.2.1"))
        assert unknown["ip_country"] == "" and unknown["ip_country_mismatch"] is False

    run(database_url, counters, tenant_id, scenario, ip_countries=table)


def test_failed_logins_and_mfa_failures_of_the_last_day(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    async def scenario(world: World) -> None:
        movement = world.movement()
        features = await world.features(movement)
        assert (features["failed_logins_24h"], features["mfa_failures_24h"]) == (0, 0)
        await world.security_event(SecurityEventType.LOGIN_FAILED, at_ns=T0_NS - HOUR_NS)
        await world.security_event(SecurityEventType.LOGIN_FAILED, at_ns=T0_NS - MINUTE_NS)
        await world.security_event(SecurityEventType.LOGIN_FAILED, at_ns=T0_NS - 2 * DAY_NS)
        await world.security_event(SecurityEventType.MFA_FAILED, at_ns=T0_NS - MINUTE_NS)
        await world.security_event(SecurityEventType.STEP_UP_FAILED, at_ns=T0_NS - MINUTE_NS)
        await world.security_event(SecurityEventType.LOGIN_SUCCEEDED, at_ns=T0_NS - MINUTE_NS)
        await world.security_event(
            SecurityEventType.LOGIN_FAILED, at_ns=T0_NS - MINUTE_NS, user_id=await world.add_user()
        )
        features = await world.features(movement)
        assert (features["failed_logins_24h"], features["mfa_failures_24h"]) == (2, 2)

    run(database_url, counters, tenant_id, scenario)


def test_another_tenants_movements_never_count(
    database_url: str, counters: str, tenant_id: uuid.UUID
) -> None:
    device = uuid.uuid4()

    async def scenario(world: World) -> None:
        await world.record(world.movement(device_id=device, payee="mer_shared", ip="192.0.2.8"))
        other_tenant = world.movement(
            tenant_id=uuid.uuid4(), device_id=device, payee="mer_shared", ip="192.0.2.8"
        )
        features = await world.features(other_tenant)
        assert features["user_count_24h"] == 0
        assert features["device_count_24h"] == 0
        assert features["payee_count_24h"] == 0
        assert features["ip_count_24h"] == 0
        assert features["new_device"] is True
        assert features["kyc_tier"] == 1 and features["account_age_days"] == -1.0
        live = await world.features(world.movement(mode="live", device_id=device))
        assert live["device_count_24h"] == 0

    run(database_url, counters, tenant_id, scenario)


def test_user_facts_are_cached_for_their_lifetime(database_url: str, tenant_id: uuid.UUID) -> None:
    async def scenario(world: World) -> None:
        movement = world.movement()
        assert (await world.features(movement))["residence_country"] == ""
        async with world.unit_of_work.begin() as session:
            session.add(
                RiskProfile(
                    tenant_id=world.tenant_id,
                    mode="test",
                    user_id=world.user_id,
                    residence_country="NL",
                    updated_at=T0_NS,
                )
            )
        # Cached: the change is not seen until the entry expires or is forgotten…
        assert (await world.features(movement))["residence_country"] == ""
        # …but security events are read every time.
        await world.security_event(SecurityEventType.LOGIN_FAILED, at_ns=T0_NS - MINUTE_NS)
        assert (await world.features(movement))["failed_logins_24h"] == 1
        world.computer.forget_user(world.tenant_id, "test", world.user_id)
        assert (await world.features(movement))["residence_country"] == "NL"

    run(database_url, "memory", tenant_id, scenario, user_facts_ttl_s=3600.0)


def test_an_unreachable_redis_is_an_error_the_engine_can_catch(
    database_url: str, tenant_id: uuid.UUID
) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from billfold.kit.db import UnitOfWork, create_engine, parse_database_url
    from billfold.risk.features.counters import RedisCounters
    from billfold.risk.features.service import FeatureComputer
    from billfold.risk.types import Movement

    async def go() -> None:
        engine = create_engine(parse_database_url(database_url), pool_size=1)
        client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
        try:
            computer = FeatureComputer(RedisCounters(client))
            movement = Movement(
                tenant_id, "test", MovementKind.P2P, 100, "EUR", T0_NS, uuid.uuid4()
            )
            async with UnitOfWork(engine).begin() as session:
                with pytest.raises(RedisConnectionError):
                    await computer.compute(session, movement)
        finally:
            await client.aclose()
            await engine.dispose()

    asyncio.run(go())
