"""A PaySim-style workload: who does what, when, and whether it is fraud. Pure: no I/O,
no clock, one `random.Random(seed)`; the same configuration gives the same actions.

Ordinary customers top up by card, pay merchants (each merchant with its own amount
distribution and daily rhythm), send money to friends (a power-law social graph grown by
preferential attachment), ask friends for money, and now and then withdraw. Their activity
follows a daily rhythm (quiet nights, lunch and evening peaks).

Fraud comes in episodes, each labelled with its `Pattern`:

- account takeover: password failures, a sign-in from a new device in another country,
  then transfers draining the wallet to payees the victim never paid;
- card testing: a burst of tiny top-ups with stolen cards (most declined) and tiny
  merchant payments, from one device and IP;
- mule pass-through: several victims pay one mule, who soon withdraws or forwards it;
- structuring: many transfers just below a threshold over a day;
- new-device spending spree: a new device, then many merchant payments within an hour.

Every action of an episode is labelled fraud with the episode's pattern, including the
sign-ins and device bindings that lead to the money movements; evaluation looks only at the
money movements (`MONEY_KINDS`).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DECLINED_CARDS",
    "MONEY_KINDS",
    "SUCCESS_CARD",
    "ActionKind",
    "Customer",
    "Merchant",
    "Pattern",
    "Scenario",
    "SimulatedAction",
    "SimulationConfig",
    "generate",
]

CUSTOMERS_MAX = 100_000
MERCHANTS_MAX = 10_000
HOURS_MAX = 24 * 31
ACTIONS_MAX = 2_000_000
"""A bound on one scenario's size (the driver holds its results in memory)."""

SUCCESS_CARD = "4242424242424242"
"""The sandbox's card that always succeeds."""
DECLINED_CARDS = ("4000000000000002", "4000000000009995")
"""The sandbox's declined and insufficient-funds cards: a card tester's stolen numbers."""
WITHDRAWAL_DESTINATION = SUCCESS_CARD

HOUR_S = 3600
_RHYTHM = (
    0.15, 0.08, 0.05, 0.05, 0.06, 0.12, 0.35, 0.7, 0.95, 1.0, 1.0, 1.1,
    1.45, 1.3, 1.0, 0.95, 1.0, 1.15, 1.4, 1.5, 1.3, 1.0, 0.65, 0.35,
)  # fmt: skip
"""How active customers are in each hour of the day, relative to a busy hour."""
_COUNTRIES = ("US", "US", "US", "US", "US", "US", "GB", "CA", "DE", "FR")
_FOREIGN_COUNTRIES = ("RU", "NG", "BR", "VN", "RO", "ID", "UA", "CN")


class ActionKind(enum.StrEnum):
    TOP_UP = "top_up"
    P2P = "p2p"
    MERCHANT_PAYMENT = "merchant_payment"
    WITHDRAWAL = "withdrawal"
    MONEY_REQUEST = "money_request"
    """The actor asks the counterparty for money; the counterparty pays it (a P2P)."""
    LOGIN_FAILED = "login_failed"
    """A sign-in with a wrong password, as `session` (its IP and country)."""
    SIGN_IN = "sign_in"
    """A new session for the actor's account (the right password), as `session`."""
    BIND_DEVICE = "bind_device"
    """`session` binds a new device key (`device`); its later requests are signed by it."""


MONEY_KINDS = frozenset(
    {
        ActionKind.TOP_UP,
        ActionKind.P2P,
        ActionKind.MERCHANT_PAYMENT,
        ActionKind.WITHDRAWAL,
        ActionKind.MONEY_REQUEST,
    }
)
"""The kinds that move money (and so pass a risk decision)."""


class Pattern(enum.StrEnum):
    ACCOUNT_TAKEOVER = "account_takeover"
    CARD_TESTING = "card_testing"
    MULE_PASS_THROUGH = "mule_pass_through"  # noqa: S105 (a name, not a password)
    STRUCTURING = "structuring"
    NEW_DEVICE_SPREE = "new_device_spree"


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    seed: int
    customers: int = 200
    merchants: int = 20
    hours: int = 24
    fraud_rate: float = 0.02
    """The share of money movements that should be fraud (approximately)."""
    currency: str = "USD"
    structuring_threshold_minor: int = 100_000
    """Structuring keeps every transfer below this (1,000.00 in a two-decimal currency)."""

    def __post_init__(self) -> None:
        if not 10 <= self.customers <= CUSTOMERS_MAX:
            raise ValueError(f"customers must be between 10 and {CUSTOMERS_MAX}")
        if not 1 <= self.merchants <= MERCHANTS_MAX:
            raise ValueError(f"merchants must be between 1 and {MERCHANTS_MAX}")
        if not 1 <= self.hours <= HOURS_MAX:
            raise ValueError(f"hours must be between 1 and {HOURS_MAX}")
        if not 0.0 <= self.fraud_rate <= 0.5:
            raise ValueError("fraud_rate must be between 0 and 0.5")
        if not 1_000 <= self.structuring_threshold_minor <= 10**9:
            raise ValueError("structuring_threshold_minor must be between 1000 and 10**9")


@dataclass(frozen=True, slots=True)
class Customer:
    index: int
    country: str
    ip: str
    funding_minor: int
    """Topped up by card before the workload starts (the driver's setup)."""
    fraudster: bool
    """An account fraudsters control (mules, card testers, structurers)."""
    friends: tuple[int, ...]

    @property
    def session(self) -> str:
        """The label of the customer's own session and device."""
        return f"c{self.index}"


@dataclass(frozen=True, slots=True)
class Merchant:
    index: int
    category_code: str
    """ISO 18245 MCC."""
    category: str
    amount_median_minor: int
    amount_sigma: float
    """Amounts are log-normal around the median with this shape."""
    popularity: float


@dataclass(frozen=True, slots=True)
class SimulatedAction:
    index: int
    """Position in the time-ordered sequence."""
    at_s: int
    """Simulated seconds since the start (hour 0 is midnight)."""
    kind: ActionKind
    actor: int
    """The customer whose account acts (the payer; for a money request, the requester)."""
    session: str
    """Which signed-in session sends it: the customer's own (`c<i>`) or an episode's."""
    device: str
    """The device that signs the session's requests."""
    ip: str
    ip_country: str
    fraud: bool
    pattern: Pattern | None
    episode: int | None
    lane: str
    """Actions of one lane happen strictly in order (the driver runs lanes in parallel)."""
    amount_minor: int = 0
    counterparty: int | None = None
    """A customer (P2P, money request: the payer) or a merchant (merchant payment)."""
    instrument: str | None = None
    """The card of a top-up or the destination of a withdrawal."""

    @property
    def moves_money(self) -> bool:
        return self.kind in MONEY_KINDS


@dataclass(frozen=True, slots=True)
class Scenario:
    config: SimulationConfig
    customers: tuple[Customer, ...]
    merchants: tuple[Merchant, ...]
    actions: tuple[SimulatedAction, ...]

    def patterns(self) -> frozenset[Pattern]:
        return frozenset(a.pattern for a in self.actions if a.pattern is not None)


@dataclass(frozen=True, slots=True)
class _Category:
    name: str
    code: str
    median_minor: int
    sigma: float
    peaks: tuple[int, ...]
    """Hours of the day when the category is busiest."""


_CATEGORIES = (
    _Category("grocery", "5411", 4_500, 0.6, (11, 17, 18, 19)),
    _Category("restaurant", "5812", 3_200, 0.5, (12, 13, 19, 20)),
    _Category("coffee", "5814", 550, 0.3, (7, 8, 9, 15)),
    _Category("fuel", "5541", 5_500, 0.35, (7, 8, 17, 18)),
    _Category("electronics", "5732", 18_000, 0.9, (14, 18, 20, 21)),
    _Category("online", "5999", 2_500, 0.8, (20, 21, 22, 23)),
)


@dataclass
class _State:
    """What the generator tracks while it writes the sequence."""

    rng: random.Random
    config: SimulationConfig
    customers: tuple[Customer, ...]
    merchants: tuple[Merchant, ...]
    balances: list[int]
    """A conservative estimate of each wallet's available money (fees unknown)."""
    drafts: list[tuple[int, int, dict[str, object]]] = field(default_factory=list)
    """(at_s, order, fields) before indexing."""

    def add(self, at_s: int, **fields: object) -> None:
        self.drafts.append((at_s, len(self.drafts), fields))


def generate(config: SimulationConfig) -> Scenario:
    """The scenario of `config`: the same configuration always gives the same one."""
    rng = random.Random(config.seed)
    customers = _customers(rng, config)
    merchants = _merchants(rng, config)
    state = _State(
        rng=rng,
        config=config,
        customers=customers,
        merchants=merchants,
        balances=[customer.funding_minor for customer in customers],
    )
    ordinary = _ordinary_slots(rng, config, customers)
    episodes = _episode_slots(rng, config, ordinary_count=len(ordinary))
    slots: list[tuple[int, int, Callable[[], None]]] = []
    for order, (at_s, actor) in enumerate(ordinary):
        slots.append((at_s, order, _bind(_ordinary_action, state, at_s, actor)))
    for number, (at_s, pattern) in enumerate(episodes):
        order = len(ordinary) + number
        slots.append((at_s, order, _bind(_EPISODES[pattern], state, at_s, number)))
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    for _, _, write in slots:
        write()
    if len(state.drafts) > ACTIONS_MAX:
        raise ValueError(f"the scenario has more than {ACTIONS_MAX} actions: make it smaller")
    state.drafts.sort(key=lambda draft: (draft[0], draft[1]))
    actions = tuple(
        SimulatedAction(index=index, at_s=at_s, **fields)  # type: ignore[arg-type]
        for index, (at_s, _, fields) in enumerate(state.drafts)
    )
    return Scenario(config=config, customers=customers, merchants=merchants, actions=actions)


def _bind(
    function: Callable[[_State, int, int], None], state: _State, at_s: int, value: int
) -> Callable[[], None]:
    return lambda: function(state, at_s, value)


# -- the population


def _ip(rng: random.Random, country: str) -> str:
    """A made-up address in a block per country (only ever sent as a header)."""
    block = sum(ord(letter) for letter in country) % 200
    return f"198.{18 + block % 2}.{block}.{rng.randrange(1, 255)}"


def _customers(rng: random.Random, config: SimulationConfig) -> tuple[Customer, ...]:
    count = config.customers
    fraudsters = set(rng.sample(range(count), max(3, count // 25)))
    friends = _social_graph(rng, count, excluded=fraudsters)
    customers = []
    for index in range(count):
        country = rng.choice(_COUNTRIES)
        funding_units = 300 if index in fraudsters else rng.randrange(200, 3_000, 10)
        customers.append(
            Customer(
                index=index,
                country=country,
                ip=_ip(rng, country),
                funding_minor=funding_units * 100,
                fraudster=index in fraudsters,
                friends=tuple(sorted(friends[index])),
            )
        )
    return tuple(customers)


def _social_graph(rng: random.Random, count: int, *, excluded: set[int]) -> list[set[int]]:
    """Preferential attachment (Barabasi-Albert): a few customers have many friends, most
    have a few. Fraudsters' accounts are nobody's friends."""
    friends: list[set[int]] = [set() for _ in range(count)]
    members = [index for index in range(count) if index not in excluded]
    weighted: list[int] = []  # each member once per friend, plus once: the attachment odds
    for position, member in enumerate(members):
        links = min(position, 1 + int(rng.paretovariate(1.6)))
        chosen: set[int] = set()
        for _ in range(links * 4):  # bounded: duplicates are drawn again a few times
            if len(chosen) >= links or not weighted:
                break
            chosen.add(rng.choice(weighted))
        for other in chosen:
            friends[member].add(other)
            friends[other].add(member)
            weighted.extend((member, other))
        weighted.append(member)
    return friends


def _merchants(rng: random.Random, config: SimulationConfig) -> tuple[Merchant, ...]:
    merchants = []
    for index in range(config.merchants):
        category = _CATEGORIES[index % len(_CATEGORIES)]
        merchants.append(
            Merchant(
                index=index,
                category_code=category.code,
                category=category.name,
                amount_median_minor=max(100, int(category.median_minor * rng.uniform(0.7, 1.4))),
                amount_sigma=category.sigma,
                popularity=1.0 / (index + 1) ** 0.8,  # Zipf-like
            )
        )
    return tuple(merchants)


# -- ordinary behaviour


def _ordinary_slots(
    rng: random.Random, config: SimulationConfig, customers: Sequence[Customer]
) -> list[tuple[int, int]]:
    """(at_s, customer) for every ordinary action: a Poisson process per customer, thinned
    by the hour's rhythm."""
    end_s = config.hours * HOUR_S
    peak = max(_RHYTHM)
    slots = []
    for customer in customers:
        rate_per_hour = rng.lognormvariate(math.log(0.35), 0.6)
        if customer.fraudster:
            rate_per_hour *= 0.3
        at_s = 0.0
        for _ in range(10_000):  # bounded: at most ~40 events an hour over a month
            at_s += rng.expovariate(rate_per_hour * peak / HOUR_S)
            if at_s >= end_s:
                break
            if rng.random() < _RHYTHM[int(at_s // HOUR_S) % 24] / peak:
                slots.append((int(at_s), customer.index))
    return slots


def _own(state: _State, actor: int) -> dict[str, object]:
    customer = state.customers[actor]
    return {
        "actor": actor,
        "session": customer.session,
        "device": customer.session,
        "ip": customer.ip,
        "ip_country": customer.country,
        "fraud": False,
        "pattern": None,
        "episode": None,
        "lane": customer.session,
    }


def _ordinary_action(state: _State, at_s: int, actor: int) -> None:
    rng = state.rng
    customer = state.customers[actor]
    balance = state.balances[actor]
    draw = rng.random()
    if balance < 5_000 or draw < 0.10:
        amount = rng.randrange(20, 400, 10) * 100
        state.balances[actor] += amount
        state.add(at_s, kind=ActionKind.TOP_UP, amount_minor=amount, instrument=SUCCESS_CARD,
                  **_own(state, actor))  # fmt: skip
    elif draw < 0.62:
        merchant = _pick_merchant(state, at_s)
        amount = min(_merchant_amount(rng, merchant), balance // 2)
        state.balances[actor] -= amount
        state.add(at_s, kind=ActionKind.MERCHANT_PAYMENT, amount_minor=amount,
                  counterparty=merchant.index, **_own(state, actor))  # fmt: skip
    elif draw < 0.87 and customer.friends:
        friend = rng.choice(customer.friends)
        amount = min(rng.randrange(5, 150) * 100, balance // 3)
        if amount < 100:
            return
        if draw < 0.80:
            state.balances[actor] -= amount
            state.balances[friend] += amount
            state.add(at_s, kind=ActionKind.P2P, amount_minor=amount, counterparty=friend,
                      **_own(state, actor))  # fmt: skip
        else:  # the friend owes the customer: asked, then paid
            amount = min(amount, state.balances[friend] // 3)
            if amount < 100:
                return
            state.balances[friend] -= amount
            state.balances[actor] += amount
            state.add(at_s, kind=ActionKind.MONEY_REQUEST, amount_minor=amount,
                      counterparty=friend, **_own(state, actor))  # fmt: skip
    elif balance > 20_000:
        amount = rng.randrange(50, max(51, balance // 300)) * 100
        state.balances[actor] -= amount
        state.add(at_s, kind=ActionKind.WITHDRAWAL, amount_minor=amount,
                  instrument=WITHDRAWAL_DESTINATION, **_own(state, actor))  # fmt: skip


def _pick_merchant(state: _State, at_s: int) -> Merchant:
    hour = (at_s // HOUR_S) % 24
    weights = [
        merchant.popularity * (3.0 if hour in _category(merchant).peaks else 1.0)
        for merchant in state.merchants
    ]
    return state.rng.choices(state.merchants, weights=weights)[0]


def _category(merchant: Merchant) -> _Category:
    return _CATEGORIES[merchant.index % len(_CATEGORIES)]


def _merchant_amount(rng: random.Random, merchant: Merchant) -> int:
    amount = rng.lognormvariate(math.log(merchant.amount_median_minor), merchant.amount_sigma)
    return max(100, min(int(amount), 500_000))


# -- fraud episodes


def _episode_slots(
    rng: random.Random, config: SimulationConfig, *, ordinary_count: int
) -> list[tuple[int, Pattern]]:
    """When each episode starts and its pattern: enough episodes (of about eight money
    movements) for `fraud_rate`, and every pattern at least once when it is above 0."""
    if config.fraud_rate <= 0:
        return []
    wanted = config.fraud_rate * ordinary_count / (1 - config.fraud_rate)
    count = max(len(Pattern), round(wanted / 8))
    patterns = list(Pattern)
    rng.shuffle(patterns)
    end_s = config.hours * HOUR_S
    latest_s = max(1, end_s - 2 * HOUR_S)  # room for the episode to play out
    return sorted(
        (rng.randrange(0, latest_s), patterns[number % len(patterns)]) for number in range(count)
    )


def _fraud(state: _State, *, actor: int, session: str, device: str, ip: str, country: str,
           pattern: Pattern, episode: int) -> dict[str, object]:  # fmt: skip
    return {
        "actor": actor,
        "session": session,
        "device": device,
        "ip": ip,
        "ip_country": country,
        "fraud": True,
        "pattern": pattern,
        "episode": episode,
        "lane": f"e{episode}",
    }


def _victim(state: _State, *, minimum_minor: int) -> int:
    """An ordinary customer with money to lose (the richest of a few drawn)."""
    ordinary = [c.index for c in state.customers if not c.fraudster]
    drawn = state.rng.sample(ordinary, min(5, len(ordinary)))
    best = max(drawn, key=lambda index: state.balances[index])
    if state.balances[best] < minimum_minor:
        state.balances[best] = minimum_minor  # it topped up earlier than we modelled
    return best


def _fraudsters(state: _State) -> list[int]:
    return [c.index for c in state.customers if c.fraudster]


def _account_takeover(state: _State, at_s: int, episode: int) -> None:
    rng = state.rng
    victim = _victim(state, minimum_minor=20_000)
    country = rng.choice(_FOREIGN_COUNTRIES)
    ip = _ip(rng, country)
    attacker = f"e{episode}"
    common = _fraud(state, actor=victim, session=attacker, device=attacker, ip=ip,
                    country=country, pattern=Pattern.ACCOUNT_TAKEOVER, episode=episode)  # fmt: skip
    clock = at_s
    for _ in range(rng.randint(2, 4)):  # below the lockout (5 in a row)
        state.add(clock, kind=ActionKind.LOGIN_FAILED, **common)
        clock += rng.randint(3, 40)
    state.add(clock, kind=ActionKind.SIGN_IN, **common)
    state.add(clock + rng.randint(5, 30), kind=ActionKind.BIND_DEVICE, **common)
    clock += rng.randint(40, 120)
    payees = rng.sample(_fraudsters(state), min(len(_fraudsters(state)), rng.randint(1, 3)))
    drained = state.balances[victim] * 8 // 10
    pieces = rng.randint(2, 4)
    for piece in range(pieces):
        amount = drained // pieces
        if amount <= 0:
            break
        payee = payees[piece % len(payees)]
        state.balances[victim] -= amount
        state.balances[payee] += amount
        state.add(clock, kind=ActionKind.P2P, amount_minor=amount, counterparty=payee, **common)
        clock += rng.randint(10, 90)


def _card_testing(state: _State, at_s: int, episode: int) -> None:
    rng = state.rng
    tester = rng.choice(_fraudsters(state))
    country = rng.choice(_FOREIGN_COUNTRIES)
    ip = _ip(rng, country)
    device = f"e{episode}"
    common = _fraud(state, actor=tester, session=device, device=device, ip=ip, country=country,
                    pattern=Pattern.CARD_TESTING, episode=episode)  # fmt: skip
    state.add(at_s, kind=ActionKind.SIGN_IN, **common)
    state.add(at_s + rng.randint(2, 10), kind=ActionKind.BIND_DEVICE, **common)
    clock = at_s + 15
    merchant = rng.choice(state.merchants)
    for _ in range(rng.randint(10, 22)):
        amount = rng.randint(50, 499)
        if rng.random() < 0.7 or state.balances[tester] < 2_000:
            card = SUCCESS_CARD if rng.random() < 0.2 else rng.choice(DECLINED_CARDS)
            if card == SUCCESS_CARD:
                state.balances[tester] += amount
            state.add(clock, kind=ActionKind.TOP_UP, amount_minor=amount, instrument=card,
                      **common)  # fmt: skip
        else:
            state.balances[tester] -= amount
            state.add(clock, kind=ActionKind.MERCHANT_PAYMENT, amount_minor=amount,
                      counterparty=merchant.index, **common)  # fmt: skip
        clock += rng.randint(1, 12)


def _mule_pass_through(state: _State, at_s: int, episode: int) -> None:
    rng = state.rng
    mule = rng.choice(_fraudsters(state))
    ordinary = [c.index for c in state.customers if not c.fraudster]
    funded = [index for index in ordinary if state.balances[index] >= 4_000] or ordinary
    victims = rng.sample(funded, min(len(funded), rng.randint(3, 6)))
    clock = at_s
    received = 0
    for victim in victims:
        customer = state.customers[victim]
        amount = max(1_000, min(rng.randrange(100, 600) * 100, state.balances[victim] // 2))
        state.balances[victim] -= amount
        received += amount
        state.add(clock, kind=ActionKind.P2P, amount_minor=amount, counterparty=mule,
                  **_fraud(state, actor=victim, session=customer.session,
                           device=customer.session, ip=customer.ip, country=customer.country,
                           pattern=Pattern.MULE_PASS_THROUGH, episode=episode))  # fmt: skip
        clock += rng.randint(60, 900)
    mule_customer = state.customers[mule]
    common = _fraud(state, actor=mule, session=mule_customer.session,
                    device=mule_customer.session, ip=mule_customer.ip,
                    country=mule_customer.country, pattern=Pattern.MULE_PASS_THROUGH,
                    episode=episode)  # fmt: skip
    onward = received * 9 // 10
    clock += rng.randint(30, 600)
    others = [index for index in _fraudsters(state) if index != mule]
    if rng.random() < 0.6 or not others:
        state.add(clock, kind=ActionKind.WITHDRAWAL, amount_minor=onward,
                  instrument=WITHDRAWAL_DESTINATION, **common)  # fmt: skip
    else:
        forward_to = rng.choice(others)
        state.balances[forward_to] += onward
        state.add(clock, kind=ActionKind.P2P, amount_minor=onward, counterparty=forward_to,
                  **common)  # fmt: skip


def _structuring(state: _State, at_s: int, episode: int) -> None:
    rng = state.rng
    threshold = state.config.structuring_threshold_minor
    actor = rng.choice(_fraudsters(state))
    customer = state.customers[actor]
    common = _fraud(state, actor=actor, session=customer.session, device=customer.session,
                    ip=customer.ip, country=customer.country, pattern=Pattern.STRUCTURING,
                    episode=episode)  # fmt: skip
    amounts = [rng.randint(threshold * 90 // 100, threshold - 1) for _ in range(rng.randint(6, 12))]
    needed = sum(amounts) * 11 // 10  # a margin for the top-up fees
    top_up_max = 5 * threshold
    clock = at_s
    for _ in range(math.ceil(needed / top_up_max)):  # funded first, like a cash deposit
        amount = min(top_up_max, needed)
        needed -= amount
        state.add(clock, kind=ActionKind.TOP_UP, amount_minor=amount, instrument=SUCCESS_CARD,
                  **common)  # fmt: skip
        clock += rng.randint(20, 120)
    others = [index for index in _fraudsters(state) if index != actor]
    payees = rng.sample(others, min(len(others), 3)) or [actor]
    span_s = min(20 * HOUR_S, max(HOUR_S, state.config.hours * HOUR_S - clock - 60))
    times = sorted(clock + rng.randrange(60, span_s) for _ in amounts)
    for when, amount in zip(times, amounts, strict=True):
        payee = rng.choice(payees)
        state.balances[payee] += amount
        state.add(when, kind=ActionKind.P2P, amount_minor=amount, counterparty=payee, **common)


def _new_device_spree(state: _State, at_s: int, episode: int) -> None:
    rng = state.rng
    victim = _victim(state, minimum_minor=30_000)
    customer = state.customers[victim]
    ip = _ip(rng, customer.country)  # the same country: only the device gives it away
    device = f"e{episode}"
    common = _fraud(state, actor=victim, session=device, device=device, ip=ip,
                    country=customer.country, pattern=Pattern.NEW_DEVICE_SPREE,
                    episode=episode)  # fmt: skip
    state.add(at_s, kind=ActionKind.SIGN_IN, **common)
    state.add(at_s + rng.randint(5, 30), kind=ActionKind.BIND_DEVICE, **common)
    budget = state.balances[victim] * 7 // 10
    payments = rng.randint(6, 14)
    clock = at_s + 60
    for _ in range(payments):
        merchant = rng.choice(state.merchants)
        amount = min(2 * _merchant_amount(rng, merchant), budget // payments)
        if amount <= 0:
            break
        state.balances[victim] -= amount
        state.add(clock, kind=ActionKind.MERCHANT_PAYMENT, amount_minor=amount,
                  counterparty=merchant.index, **common)  # fmt: skip
        clock += rng.randint(60, 3_000 // payments * 5 // 4)


_EPISODES: dict[Pattern, Callable[[_State, int, int], None]] = {
    Pattern.ACCOUNT_TAKEOVER: _account_takeover,
    Pattern.CARD_TESTING: _card_testing,
    Pattern.MULE_PASS_THROUGH: _mule_pass_through,
    Pattern.STRUCTURING: _structuring,
    Pattern.NEW_DEVICE_SPREE: _new_device_spree,
}
