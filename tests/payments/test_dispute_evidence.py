"""Evidence attached to a dispute: items sent at once are all kept, up to the most a
dispute holds, and the rest refused."""

from __future__ import annotations

import asyncio
from typing import Any

from billfold.kit.errors import BillfoldError
from billfold.payments.flows import disputes
from payments.payments_support import World, internal_id


def test_evidence_sent_at_once_is_kept_up_to_the_most_a_dispute_holds(
    database_url: str,
) -> None:
    """Each item read the dispute's list and wrote it back without a lock: sent together
    on PostgreSQL, later commits overwrote earlier items that had each been answered 200
    (4 of 8 kept), and the cap counted lists that were already stale."""
    sent = disputes.EVIDENCE_MAX + 5
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 1_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]
        opened = world.client.post(
            f"/v1/payments/{payment_id}/disputes", json={"amount": 500}, headers=world.api
        )
        assert opened.status_code == 201, opened.text
        dispute_id = opened.json()["disputes"][-1]["id"]

        async def race() -> list[Any]:
            attached = (
                disputes.add_evidence(
                    world.runtime,
                    dispute_id=internal_id(dispute_id),
                    kind="receipt",
                    description=f"receipt {index}",
                )
                for index in range(sent)
            )
            return list(await asyncio.gather(*attached, return_exceptions=True))

        results = world.client.portal.call(race)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, BillfoldError) for r in refused), refused
        assert {r.code for r in refused if isinstance(r, BillfoldError)} == {
            "invalid_state_transition"
        }
        [dispute] = world.payment(payment_id)["disputes"]
        kept = [item["description"] for item in dispute["evidence"]]
        assert len(kept) == len(set(kept)) == disputes.EVIDENCE_MAX
        assert len(refused) == sent - disputes.EVIDENCE_MAX
