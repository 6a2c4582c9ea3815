"""Many money movements of every kind at once, in a seeded random mix, some of them
interrupted by a crash around their ledger step; then recovery, and the money checked.

Each example is one tenant (`World`, 1% + 10 fees) with four funded users and two
merchants. A few rounds each run a random batch of flows concurrently (`asyncio.gather`
of the flows' service functions on the app's loop, as the race tests do): P2P sends,
top-ups (some declined), merchant payments created, authorized (automatic or manual
capture, sometimes by two payers at once), captured (all or part, sometimes two amounts at
once), voided (sometimes racing a capture), refunded (partial and full, several at once),
disputed (merchant, P2P and top-up payments) and resolved (sometimes `won` and `lost` at
once); some authorizations are lapsed between rounds. A flow may be told to crash before
or after the ledger applies one of its chains (a context variable, so only that task
crashes). Everything is checked after `resume_interrupted()`, then once more after a last
concurrent round that captures or voids every authorization, refunds every capture in full
(sometimes twice at once) and resolves every open dispute:

- the books: `ledger verify`, zero-sum per currency, and a second recovery sweep finds
  nothing to do;
- every wallet's available, pending and held balances equal what the recorded payments
  (`GET /v1/payments/{id}`: state, captured and refunded amounts, fees, refunds, disputes)
  say they should be, and so do fee revenue, chargeback losses and card clearing;
- per payment: refunds and disputes not won never exceed the capture, the refunded amount
  is the refunds that succeeded, the state agrees with the amounts, the fee lines are the
  ones charged (fee returns pro rata, never more than the proportional part), the history
  follows the state machine, and nothing is left in an intermediate state (no `created`
  P2P, unsettled top-up, pending refund, unfinished capture or authorization claim,
  `opening`/`winning`/`losing` dispute).

Hypothesis draws the seeds (derandomized, so a run is repeatable up to the interleaving);
the defects the mix found are pinned by the xfail tests at the end of the file.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import itertools
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from billfold.identity.types import Mode
from billfold.kit.errors import BillfoldError
from billfold.payments.flows import disputes, merchant, p2p, recovery, refunds, topups
from billfold.payments.models import Dispute, Payment
from billfold.payments.states import Kind, State, can_transition
from payments.payments_support import TEST_CARD, CrashError, User, World, internal_id

DECLINED_CARD = "4000000000000002"
USERS = 4
MERCHANTS = 2
FUNDS = 15_000
ROUNDS = 4

# -- crashes around a flow's ledger step, one task at a time


@dataclasses.dataclass
class Crash:
    """Die on this task's first chain whose first step `matches`: after the ledger
    applied it, or before."""

    matches: Callable[[str], bool]
    after_ledger: bool
    fired: bool = False


_CRASH: contextvars.ContextVar[Crash | None] = contextvars.ContextVar("crash", default=None)
_FLOW_MODULES = (p2p, merchant, refunds, disputes, topups)


def _crash_aware(real: Any) -> Any:
    async def apply_steps(runtime: Any, owner_id: uuid.UUID, steps: Any) -> Any:
        crash = _CRASH.get()
        if crash is None or crash.fired or not steps or not crash.matches(steps[0][0]):
            return await real(runtime, owner_id, steps)
        crash.fired = True
        if crash.after_ledger:
            await real(runtime, owner_id, steps)
        raise CrashError

    return apply_steps


def _step_is(name: str) -> Callable[[str], bool]:
    return lambda step: step == name


def _step_starts(prefix: str, *, hold: bool | None = None) -> Callable[[str], bool]:
    def matches(step: str) -> bool:
        if not step.startswith(prefix):
            return False
        return hold is None or step.endswith(":hold") == hold

    return matches


# -- what a round knows of the world (read from the database before it)


@dataclasses.dataclass(frozen=True)
class Row:
    id: uuid.UUID
    kind: str
    state: str
    amount: int
    captured: int
    refunded: int
    payer: uuid.UUID | None
    capture_mode: str


@dataclasses.dataclass(frozen=True)
class DisputeRow:
    id: uuid.UUID
    payment_id: uuid.UUID
    state: str


@dataclasses.dataclass
class Snapshot:
    payments: list[Row]
    disputes: list[DisputeRow]

    def merchant(self, *states: str) -> list[Row]:
        return [row for row in self.payments if row.kind == "merchant" and row.state in states]

    def disputable(self) -> list[Row]:
        return [
            row
            for row in self.payments
            if row.state in ("succeeded", "captured", "partially_refunded", "refunded")
            and row.kind != "withdrawal"
        ]


async def _snapshot(world: World) -> Snapshot:
    async with world.runtime.unit_of_work.read() as session:
        payments = list(
            (
                await session.execute(
                    select(Payment).where(Payment.tenant_id == world.tenant_id).order_by(Payment.id)
                )
            ).scalars()
        )
        rows = [
            Row(
                p.id,
                p.kind,
                p.state,
                p.amount,
                p.captured_amount,
                p.refunded_amount,
                p.payer_user_id,
                p.capture_mode,
            )
            for p in payments
        ]
        found = list(
            (
                await session.execute(
                    select(Dispute)
                    .where(Dispute.payment_id.in_([row.id for row in rows]))
                    .order_by(Dispute.id)
                )
            ).scalars()
        )
        return Snapshot(rows, [DisputeRow(d.id, d.payment_id, d.state) for d in found])


# -- operations


@dataclasses.dataclass
class Op:
    name: str
    call: Callable[[], Awaitable[Any]]
    allowed: frozenset[str]
    """The refusals this operation may meet in a race (anything else fails the test)."""
    crash: Crash | None = None


async def _run(op: Op) -> BaseException | None:
    _CRASH.set(op.crash)  # each gathered coroutine runs in its own task and context
    try:
        await op.call()
    except Exception as error:
        return error
    return None


FUNDS_REFUSED = frozenset({"insufficient_funds"})
STATE_REFUSED = frozenset({"invalid_state_transition"})


class Planner:
    """Draws a round's operations from the seed and what the world held before it."""

    def __init__(self, world: World, rng: random.Random, users: list[User], shops: list[str]):
        self.world, self.rng, self.users, self.shops = world, rng, users, shops

    @property
    def _common(self) -> dict[str, Any]:
        return {"tenant_id": self.world.tenant_id, "mode": Mode.TEST}

    def _crash(self, matches: Callable[[str], bool], probability: float = 0.15) -> Crash | None:
        if self.rng.random() >= probability:
            return None
        return Crash(matches, after_ledger=self.rng.random() < 0.5)

    def _two_users(self) -> tuple[User, User]:
        sender, recipient = self.rng.sample(self.users, 2)
        return sender, recipient

    def p2p(self) -> Op:
        sender, recipient = self._two_users()
        amount = self.rng.randint(50, 4_000)
        call = functools.partial(
            p2p.send_p2p,
            self.world.runtime,
            **self._common,
            sender_id=internal_id(sender.id),
            recipient=recipient.handle,
            amount=amount,
            currency="USD",
        )
        return Op("p2p", call, FUNDS_REFUSED, self._crash(_step_is("transfer")))

    def top_up(self) -> Op:
        user = self.rng.choice(self.users)
        card = DECLINED_CARD if self.rng.random() < 0.2 else TEST_CARD
        call = functools.partial(
            topups.start_top_up,
            self.world.runtime,
            **self._common,
            user_id=internal_id(user.id),
            amount=self.rng.randint(1_000, 6_000),
            currency="USD",
            method="card",
            instrument=card,
        )
        return Op("top_up", call, frozenset(), self._crash(_step_is("hold")))

    def _create(self, automatic: bool) -> Callable[[], Awaitable[uuid.UUID]]:
        return functools.partial(
            merchant.create_merchant_payment,
            self.world.runtime,
            **self._common,
            merchant_id=internal_id(self.rng.choice(self.shops)),
            amount=self.rng.randint(100, 5_000),
            currency="USD",
            reference=None,
            metadata=None,
            expires_at_ns=None,
            automatic_capture=automatic,
            split_rule_id=None,
        )

    def _authorize(self, payer: User, payment_id: uuid.UUID) -> Awaitable[None]:
        return merchant.authorize(
            self.world.runtime, **self._common, user_id=internal_id(payer.id), payment_id=payment_id
        )

    def pay(self) -> Op:
        """Create a merchant payment and authorize it at once (captured at once when
        automatic)."""
        automatic = self.rng.random() < 0.5
        create, payer = self._create(automatic), self.rng.choice(self.users)

        async def call() -> None:
            await self._authorize(payer, await create())

        step = self.rng.choice(["hold", "capture"]) if automatic else "hold"
        return Op("pay", call, FUNDS_REFUSED, self._crash(_step_is(step)))

    def create(self) -> Op:
        return Op("create", self._create(self.rng.random() < 0.5), frozenset())

    def authorize(self, row: Row) -> Op:
        payer = self.rng.choice(self.users)
        step = "hold" if row.capture_mode == "manual" else self.rng.choice(["hold", "capture"])
        return Op(
            "authorize",
            lambda: self._authorize(payer, row.id),
            # Another payer's payment (authorized by them meanwhile) is not found to this one.
            FUNDS_REFUSED | STATE_REFUSED | {"payment_expired", "payment_not_found"},
            self._crash(_step_is(step)),
        )

    def capture(self, row: Row) -> Op:
        amount = None if self.rng.random() < 0.4 else self.rng.randint(50, row.amount)
        call = functools.partial(
            merchant.capture, self.world.runtime, **self._common, payment_id=row.id, amount=amount
        )
        return Op(
            "capture",
            call,
            STATE_REFUSED | {"capture_in_progress", "payment_expired"},
            self._crash(_step_is("capture")),
        )

    def void(self, row: Row) -> Op:
        call = functools.partial(
            merchant.void, self.world.runtime, **self._common, payment_id=row.id
        )
        return Op("void", call, STATE_REFUSED | {"payment_expired"})

    def refund(self, row: Row, **rest: None) -> Op:
        left = max(row.captured - row.refunded, 1)
        draw = self.rng.random()  # mostly partial; sometimes the rest, or too much
        if draw < 0.15 or "amount" in rest:
            amount = None
        elif draw < 0.3:
            amount = self.rng.randint(left, left + left // 4 + 1)
        else:
            amount = self.rng.randint(1, max(left // 2, 1))
        call = functools.partial(
            refunds.refund,
            self.world.runtime,
            **self._common,
            payment_id=row.id,
            amount=amount,
            reason=None,
        )
        return Op(
            "refund",
            call,
            STATE_REFUSED | FUNDS_REFUSED | {"refund_exceeds_captured"},
            self._crash(_step_starts("refund:")),
        )

    def dispute(self, row: Row) -> Op:
        basis = max(row.captured - row.refunded, 1)
        call = functools.partial(
            disputes.open_dispute,
            self.world.runtime,
            payment_id=row.id,
            amount=self.rng.randint(1, basis),
            opened_by="tenant",
            reason=None,
        )
        return Op(
            "dispute",
            call,
            STATE_REFUSED | {"refund_exceeds_captured"},
            self._crash(_step_starts("dispute:", hold=True)),
        )

    def resolve(self, dispute: DisputeRow, won: bool | None = None) -> Op:
        won = self.rng.random() < 0.5 if won is None else won
        call = functools.partial(
            disputes.resolve_dispute, self.world.runtime, dispute_id=dispute.id, won=won
        )
        return Op("resolve", call, STATE_REFUSED, self._crash(_step_starts("dispute:", hold=False)))

    def settle(self, snapshot: Snapshot) -> list[Op]:
        """The last round: every authorization captured or voided, every capture refunded
        in full (sometimes twice at once), every open dispute resolved."""
        ops: list[Op] = []
        for row in snapshot.merchant("authorized"):
            ops.append(self.rng.choice([self.capture, self.void])(row))
        for row in snapshot.merchant("captured", "partially_refunded"):
            ops += [self.refund(row, amount=None) for _ in range(1 + (self.rng.random() < 0.5))]
        ops += [self.resolve(dispute) for dispute in snapshot.disputes if dispute.state == "open"]
        self.rng.shuffle(ops)
        return ops

    def round(self, snapshot: Snapshot) -> list[Op]:
        """8 to 14 operations, and sometimes a second one on the same payment or dispute."""
        ops: list[Op] = []
        unpaid = [row for row in snapshot.merchant("requires_payment") if row.payer is None]
        authorized = snapshot.merchant("authorized")
        refundable = snapshot.merchant("captured", "partially_refunded")
        disputable = snapshot.disputable()
        opened = [d for d in snapshot.disputes if d.state == "open"]
        choices: list[tuple[str, float]] = [
            ("p2p", 3),
            ("top_up", 1),
            ("pay", 3),
            ("create", 1),
            ("authorize", 2 if unpaid else 0),
            ("capture", 3 if authorized else 0),
            ("void", 1 if authorized else 0),
            ("refund", 3 if refundable else 0),
            ("dispute", 2 if disputable else 0),
            ("resolve", 2 if opened else 0),
        ]
        names = [name for name, _ in choices]
        weights = [weight for _, weight in choices]
        for name in self.rng.choices(names, weights, k=self.rng.randint(8, 14)):
            again = self.rng.random() < 0.35  # a race on the same target
            if name in ("p2p", "top_up", "pay", "create"):
                ops.append(getattr(self, name)())
            elif name == "authorize":
                row = self.rng.choice(unpaid)
                ops += [self.authorize(row) for _ in range(1 + again)]
            elif name in ("capture", "void"):
                row = self.rng.choice(authorized)
                ops.append(getattr(self, name)(row))
                if again:
                    ops.append(self.rng.choice([self.capture, self.void])(row))
            elif name == "refund":
                row = self.rng.choice(refundable)
                ops += [self.refund(row) for _ in range(1 + again)]
                if self.rng.random() < 0.3:
                    ops.append(self.dispute(row))
            elif name == "dispute":
                row = self.rng.choice(disputable)
                ops += [self.dispute(row) for _ in range(1 + again)]
            else:
                dispute = self.rng.choice(opened)
                if again:  # both outcomes at once
                    ops += [self.resolve(dispute, won=True), self.resolve(dispute, won=False)]
                else:
                    ops.append(self.resolve(dispute))
        self.rng.shuffle(ops)
        return ops


async def _lapse(world: World, rng: random.Random, snapshot: Snapshot) -> None:
    """Between rounds, a few authorizations (or unpaid payments) reach their expiry."""
    lapsing = [
        row for row in snapshot.merchant("authorized", "requires_payment") if rng.random() < 0.12
    ]
    if not lapsing:
        return
    async with world.runtime.unit_of_work.begin() as session:
        for row in lapsing:
            payment = await session.get(Payment, row.id)
            assert payment is not None
            if payment.state == "authorized":
                payment.authorization_expires_at = 1
            elif payment.state == "requires_payment":
                payment.expires_at = 1


# -- the checks

TOLERATE_KNOWN_DEFECTS = False
"""The mix can meet the two defects pinned by the xfail tests at the end of this file (a
payment left `refunded` though a refund failed after another completed it; two
transitions recorded from one state by a void racing another void or an expiry, or an
authorization racing its retry, on PostgreSQL). They are tolerated in exactly that form
(and counted in `Seen.known`) so that this guard keeps checking everything else: set it to
False once they are fixed."""


@dataclasses.dataclass
class Seen:
    """What the examples exercised, so that no check passes for want of cases."""

    ops: Counter[str] = dataclasses.field(default_factory=Counter)
    refused: Counter[str] = dataclasses.field(default_factory=Counter)
    crashes: Counter[str] = dataclasses.field(default_factory=Counter)
    states: Counter[str] = dataclasses.field(default_factory=Counter)
    disputes: Counter[str] = dataclasses.field(default_factory=Counter)
    refunds_per_payment: Counter[int] = dataclasses.field(default_factory=Counter)
    known: Counter[str] = dataclasses.field(default_factory=Counter)


def _check_outcomes(ops: list[Op], results: list[BaseException | None], seen: Seen) -> None:
    for op, error in zip(ops, results, strict=True):
        if error is None:
            seen.ops[op.name] += 1
        elif isinstance(error, CrashError):
            assert op.crash is not None and op.crash.fired, (op.name, error)
            seen.crashes[op.name] += 1
        elif isinstance(error, BillfoldError):
            assert error.code in op.allowed, (op.name, error.code, str(error))
            seen.refused[f"{op.name}:{error.code}"] += 1
        else:
            raise AssertionError(f"{op.name} raised {error!r}") from error


FINAL = {
    "top_up": {"succeeded", "failed"},
    "p2p": {"succeeded", "failed"},
    "merchant": {
        "requires_payment",
        "authorized",
        "captured",
        "partially_refunded",
        "refunded",
        "voided",
        "expired",
    },
}
CAPTURED = ("captured", "partially_refunded", "refunded")


class Expected:
    """Balances as the recorded payments say they should be."""

    def __init__(self) -> None:
        self.wallets: dict[str, dict[str, int]] = defaultdict(
            lambda: {"available": 0, "pending": 0, "held": 0}
        )
        self.fee_revenue = 0
        self.chargeback_losses = 0
        self.clearing_posted = 0  # debits less credits
        self.clearing_pending_credits = 0

    def move(self, owner: str | None, available: int, *, pending: int = 0, held: int = 0) -> None:
        assert owner is not None
        wallet = self.wallets[owner]
        wallet["available"] += available
        wallet["pending"] += pending
        wallet["held"] += held


def _check_payment(shown: dict[str, Any], row: Payment, expected: Expected, seen: Seen) -> None:
    """One payment's record, alone and against the balances it implies."""
    kind, state = shown["kind"], shown["state"]
    seen.states[f"{kind}:{state}"] += 1
    assert state in FINAL[kind], f"{shown['id']} left {state}"
    amount, captured = int(shown["amount"]), int(shown["captured_amount"])
    refunded = int(shown["refunded_amount"])
    fees = [int(fee["amount"]) for fee in shown["fees"]]
    charged = sum(fee for fee in fees if fee > 0)
    returns = [fee for fee in shown["fees"] if fee["rule"] == "fee_return"]

    # History: from creation to the current state, by the state machine's transitions.
    history = shown["history"]
    assert history[0]["from_state"] is None and history[-1]["to_state"] == state, history
    pairs = [(change["from_state"], change["to_state"]) for change in history]
    for before, after in itertools.pairwise(pairs):
        assert can_transition(Kind(kind), State(after[0]), State(after[1])), history
        if after[0] != before[1] and TOLERATE_KNOWN_DEFECTS and after[0] == before[0]:
            # Two transitions recorded from one state (void, or void and expiry, at once;
            # an authorization and its retry).
            seen.known[f"forked:{before[1]}/{after[1]}"] += 1  # see the xfail test below
            continue
        assert after[0] == before[1], history

    # Refunds: settled, the refunded amount is theirs, returns never beyond the
    # proportional part of the capture fees, and with the disputes not won never beyond the
    # capture.
    for refund in shown["refunds"]:
        assert refund["state"] in ("succeeded", "failed"), refund
        if refund["state"] == "failed":
            assert refund["fee_returned"] == "0", refund
    succeeded = [r for r in shown["refunds"] if r["state"] == "succeeded"]
    refund_total = sum(int(r["amount"]) for r in succeeded)
    fee_returned = sum(int(r["fee_returned"]) for r in succeeded)
    assert refunded == refund_total, shown
    assert sorted(-int(fee["amount"]) for fee in returns) == sorted(
        int(r["fee_returned"]) for r in succeeded if r["fee_returned"] != "0"
    ), shown
    claimed = sum(int(d["amount"]) for d in shown["disputes"] if d["state"] != "won")
    assert refund_total + claimed <= captured, shown
    seen.refunds_per_payment[len(succeeded)] += 1

    if kind == "merchant":
        assert state != "requires_payment" or row.payer_user_id is None, "claim left"
        assert row.capture_claim is None, "capture claim left"
        if state in CAPTURED:
            assert 0 < captured <= amount, shown
            assert fee_returned <= captured // 100, shown  # the proportional part: 1%
            assert charged == fee_of(captured), shown
        else:
            assert captured == 0 and fees == [] and shown["refunds"] == [], shown
        assert (state == "captured") == (state in CAPTURED and refunded == 0), shown
        if state == "partially_refunded":
            assert 0 < refunded < captured, shown
        if state == "refunded" and refunded < captured and TOLERATE_KNOWN_DEFECTS:
            assert any(r["state"] == "failed" for r in shown["refunds"]), shown
            seen.known["refunded_short"] += 1  # see the xfail test below
        elif state == "refunded":
            assert refunded == captured, shown
        if state == "authorized":
            expected.move(shown["payer"], -amount, held=amount)
            expected.move(shown["merchant_id"], 0, pending=amount)
        if state in CAPTURED:
            expected.move(shown["payer"], refunded - captured)
            expected.move(shown["merchant_id"], captured - charged - refunded + fee_returned)
        receiver, claimant = shown["merchant_id"], shown["payer"]
    else:
        assert refunded == 0 and shown["refunds"] == [], shown
        if state == "succeeded":
            assert captured == amount and charged == fee_of(amount), shown
        else:
            assert captured == 0 and fees == [], shown
        if kind == "p2p" and state == "succeeded":
            expected.move(shown["payer"], -amount - charged)
            expected.move(shown["payee"], amount)
        if kind == "top_up" and state == "succeeded":
            expected.move(shown["payee"], amount - charged)
            expected.clearing_posted += amount
        receiver, claimant = shown["payee"], None if kind == "top_up" else shown["payer"]
    expected.fee_revenue += sum(fees)

    # Disputes: open ones hold what the receiver had (pending toward the claimant); lost
    # ones paid the claimant the whole amount, the shortfall from chargeback losses.
    for dispute in shown["disputes"]:
        seen.disputes[dispute["state"]] += 1
        assert dispute["state"] in ("open", "won", "lost"), dispute
        disputed, held = int(dispute["amount"]), int(dispute["held_amount"])
        assert 0 <= held <= disputed, dispute
        if dispute["state"] == "open":
            expected.move(receiver, -held, held=held)
            if claimant is None:
                expected.clearing_pending_credits += held
            else:
                expected.move(claimant, 0, pending=held)
        if dispute["state"] == "lost":
            expected.move(receiver, -held)
            expected.chargeback_losses += disputed - held
            if claimant is None:
                expected.clearing_posted -= disputed
            else:
                expected.move(claimant, disputed)


def fee_of(amount: int) -> int:
    return amount // 100 + 10


async def _payment_rows(world: World) -> list[Payment]:
    async with world.runtime.unit_of_work.read() as session:
        statement = select(Payment).where(Payment.tenant_id == world.tenant_id)
        return list((await session.execute(statement)).scalars())


def _check_world(world: World, users: list[User], shops: list[str], seen: Seen) -> None:
    """Everything recorded agrees with itself and with the ledger."""
    world.assert_books()
    expected = Expected()
    for user in users:
        expected.move(user.id, 0)
    for shop in shops:
        expected.move(shop, 0)
    rows = world.client.portal.call(functools.partial(_payment_rows, world))
    assert rows
    for row in rows:
        _check_payment(world.payment(f"pay_{row.id.hex}"), row, expected, seen)
    for user in users:
        assert world.wallet(user) == expected.wallets[user.id], user.id
    for shop in shops:
        assert world.merchant_wallet(shop) == expected.wallets[shop], shop
    assert set(expected.wallets) == {user.id for user in users} | set(shops)
    revenue = world.system("fee_revenue")
    assert revenue["credits_posted"] - revenue["debits_posted"] == expected.fee_revenue
    assert revenue["credits_pending"] == revenue["debits_pending"] == 0
    losses = world.system("chargeback_losses")
    assert losses["debits_posted"] - losses["credits_posted"] == expected.chargeback_losses
    clearing = world.system("clearing:sandbox_card")
    assert clearing["debits_posted"] - clearing["credits_posted"] == expected.clearing_posted
    assert clearing["credits_pending"] == expected.clearing_pending_credits
    assert clearing["debits_pending"] == 0  # no top-up left unsettled


# -- the test


def _scenario(database_url: str, seed: int, seen: Seen) -> None:
    rng = random.Random(seed)
    with World(database_url, payments_claim_grace_s=0) as world:
        users = [world.user() for _ in range(USERS)]
        shops = [world.merchant() for _ in range(MERCHANTS)]
        for user in users:
            world.fund(user, FUNDS)
        planner = Planner(world, rng, users, shops)
        with pytest.MonkeyPatch.context() as patch:
            for module in _FLOW_MODULES:
                patch.setattr(module, "apply_steps", _crash_aware(module.apply_steps))
            for _ in range(ROUNDS):
                snapshot = world.client.portal.call(functools.partial(_snapshot, world))
                world.client.portal.call(functools.partial(_lapse, world, rng, snapshot))
                ops = planner.round(snapshot)

                async def race(ops: list[Op] = ops) -> list[BaseException | None]:
                    return list(await asyncio.gather(*(_run(op) for op in ops)))

                _check_outcomes(ops, world.client.portal.call(race), seen)
                world.deliver()  # the sandbox's notifications: top-ups settle or fail
            _recovered_and_checked(world, users, shops, seen)
            snapshot = world.client.portal.call(functools.partial(_snapshot, world))
            ops = planner.settle(snapshot)

            async def settle(ops: list[Op] = ops) -> list[BaseException | None]:
                return list(await asyncio.gather(*(_run(op) for op in ops)))

            _check_outcomes(ops, world.client.portal.call(settle), seen)
        _recovered_and_checked(world, users, shops, seen)


def _recovered_and_checked(world: World, users: list[User], shops: list[str], seen: Seen) -> None:
    world.resume_interrupted()
    world.deliver()
    # A second sweep changes nothing of this world: the checks below hold after it. (Its
    # count is not asserted: recovery sweeps every tenant of the database, which other test
    # files share, and they may leave work of their own.)
    again = functools.partial(recovery.resume_interrupted, world.runtime, older_than_s=0)
    world.client.portal.call(again)
    _check_world(world, users, shops, seen)


SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def test_random_concurrent_money_flows_keep_the_books_and_the_records(database_url: str) -> None:
    seen = Seen()

    @settings(
        max_examples=3,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
    )
    @example(seed=1)
    @example(seed=2024)
    @given(seed=SEEDS)
    def scenario(seed: int) -> None:
        _scenario(database_url, seed, seen)

    scenario()
    # Every kind of movement went through, raced and crashed, and every check had cases.
    kinds = {"p2p", "top_up", "pay", "create", "authorize", "capture", "void", "refund"}
    assert kinds | {"dispute", "resolve"} <= set(seen.ops), seen.ops
    assert sum(seen.crashes.values()) >= 3, seen.crashes
    assert sum(seen.refused.values()) >= 3, seen.refused
    assert {"open", "won", "lost"} <= set(seen.disputes), seen.disputes
    for state in ("captured", "partially_refunded", "refunded", "voided", "authorized"):
        assert seen.states[f"merchant:{state}"] > 0, seen.states
    assert any(count >= 2 for count in seen.refunds_per_payment), seen.refunds_per_payment


# -- defects the random mix found, each reduced to a deterministic reproduction


def _refund_call(world: World, payment_id: str, amount: int) -> Callable[[], Awaitable[Any]]:
    return functools.partial(
        refunds.refund,
        world.runtime,
        tenant_id=world.tenant_id,
        mode=Mode.TEST,
        payment_id=internal_id(payment_id),
        amount=amount,
        reason=None,
    )


def test_a_refund_failing_after_another_completed_the_capture_leaves_it_refundable(
    database_url: str,
) -> None:
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 5_000)
        payment_id = world.paid(ann, shop, 1_000)["id"]  # the shop keeps 1000 - 20
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(refunds, "apply_steps", _crash_aware(refunds.apply_steps))

            async def crashed() -> None:  # 700 reserved, pending, nothing moved
                _CRASH.set(Crash(_step_starts("refund:"), after_ledger=False))
                with pytest.raises(CrashError):
                    await _refund_call(world, payment_id, 700)()

            world.client.portal.call(crashed)
        world.client.portal.call(_refund_call(world, payment_id, 300))
        assert world.merchant_wallet(shop)["available"] == 683  # 980 - 300 + 3 returned
        world.resume_interrupted()  # the 700 is re-driven: the shop cannot pay it, it fails
        shown = world.payment(payment_id)
        refunds_shown = sorted((r["amount"], r["state"]) for r in shown["refunds"])
        assert refunds_shown == [("300", "succeeded"), ("700", "failed")]
        assert (shown["captured_amount"], shown["refunded_amount"]) == ("1000", "300")
        assert world.wallet(ann)["available"] == 5_000 - 1_000 + 300
        # The record says what was refunded: 300 of 1000, so `partially_refunded`, and the
        # rest refundable (the shop holds 683): it is refused as `refunded` instead.
        assert shown["state"] == "partially_refunded", shown["state"]
        more = world.client.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": 600}, headers=world.api
        )
        assert more.status_code == 201, more.text


def test_concurrent_voids_record_the_transition_once(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serializes every unit of work (BEGIN IMMEDIATE): no overlap")
    with World(database_url) as world:
        ann, shop = world.user(), world.merchant()
        world.fund(ann, 2_000)
        body = {"merchant_id": shop, "amount": 1_000, "currency": "USD", "capture": "manual"}
        payment_id = world.client.post("/v1/payments", json=body, headers=world.api).json()["id"]
        authorized = world.client.post(f"/v1/me/payments/{payment_id}/authorize", headers=ann.auth)
        assert authorized.json()["state"] == "authorized", authorized.text
        real = merchant.apply_steps

        async def race() -> list[BaseException | None]:
            barrier = asyncio.Barrier(2)

            async def apply_steps(runtime: Any, owner_id: Any, steps: Any) -> Any:
                # Both voids have moved the ledger (the second answered `exists`) and so
                # both go on to record the state change at once.
                results = await real(runtime, owner_id, steps)
                await asyncio.wait_for(barrier.wait(), timeout=10)
                return results

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(merchant, "apply_steps", apply_steps)
                void = functools.partial(
                    merchant.void,
                    world.runtime,
                    tenant_id=world.tenant_id,
                    mode=Mode.TEST,
                    payment_id=internal_id(payment_id),
                )
                return list(await asyncio.gather(void(), void(), return_exceptions=True))

        assert world.client.portal.call(race) == [None, None]  # both voids answered
        shown = world.payment(payment_id)
        assert shown["state"] == "voided"
        assert world.wallet(ann) == {"available": 2_000, "pending": 0, "held": 0}
        transitions = [(h["from_state"], h["to_state"]) for h in shown["history"]]
        assert transitions == [
            (None, "requires_payment"),
            ("requires_payment", "authorized"),
            ("authorized", "voided"),
        ]
