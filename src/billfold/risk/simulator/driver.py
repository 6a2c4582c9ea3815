"""Plays a `Scenario` through the public HTTP API with the typed SDK and records, per
action, the ground truth and what the platform answered (one JSON object per line).

Setup, through the API: the merchants are onboarded, the customers signed up (KYC tier 2,
so that a simulated day fits their limits), signed in, each binds a device, and each is
funded by a card top-up; the run starts once the funding has settled (the sandbox confirms
top-ups asynchronously: a server's own worker applies its notifications; in-process, the
runner relays them, see `in_process`).

**Simulated time is compressed.** The server keeps real time, so the driver plays the
actions in their simulated order as fast as `concurrency` allows: the order is kept, the
wall-clock spacing is not (a simulated day takes as long as its requests take). Velocity
windows therefore see bursts as bursts, and quiet hours shrink to nothing. Actions of one
*lane* (one customer's own activity, or one fraud episode) run strictly one after another;
lanes run in parallel, with at most `concurrency` requests in flight.

Each session's requests carry the simulated client address (``X-Forwarded-For``) and
country (``CF-IPCountry``), which a server trusts only behind a configured proxy, and once
its device is bound every request is signed by it (``Billfold-Device-*`` headers).

What a record holds: the action (``index``, ``at_s``, ``kind``, ``actor``,
``counterparty``, ``amount``, ``session``, ``device``, ``ip``, ``ip_country``), the truth
(``fraud``, ``pattern``, ``episode``) and the answer: ``status`` (HTTP), ``payment_id``,
``state`` (e.g. ``in_review``), and for a problem its ``code`` (e.g. ``risk_blocked``,
``step_up_required``) and any ``decision_id``. Risk answers are recorded generically, so
the same driver works whatever the server decides.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from billfold.client import Billfold, BillfoldUser, DeviceSigner
from billfold.client.errors import ApiError, BillfoldClientError
from billfold.risk.simulator.evaluate import Evaluation, evaluate
from billfold.risk.simulator.generator import ActionKind, Scenario, SimulatedAction

__all__ = ["CONCURRENCY_MAX", "SimulationReport", "print_summary", "run_simulation"]

CONCURRENCY_MAX = 256
TEST_KEY_PREFIX = "bf_test_"
KYC_TIER = 2
SETTLE_POLL_S = 0.05
SETTLE_TIMEOUT_S = 120.0
RETRIES_MAX = 6
"""The SDK's retries (429s included: sign-ins are rate limited per client address)."""
_TERMINAL_TOP_UP_STATES = frozenset({"succeeded", "failed"})
_DETAIL_LENGTH_MAX = 200


@dataclass
class SimulationReport:
    records: list[dict[str, Any]]
    """Every setup and run record, in order (setup first)."""
    elapsed_s: float
    run_elapsed_s: float
    """The run's actions only (setup excluded)."""
    labels_posted: int = 0
    tenant_id: str = ""
    """`ten_…`: the tenant the simulated customers live in."""

    @property
    def actions_per_s(self) -> float:
        run = sum(1 for record in self.records if record["phase"] == "run")
        return run / self.run_elapsed_s if self.run_elapsed_s > 0 else 0.0

    def evaluation(self) -> Evaluation:
        return evaluate(self.records)


_last = threading.local()
"""The HTTP status of the latest answer this thread received (the SDK returns bodies)."""


class _SessionTransport(httpx.BaseTransport):
    """One simulated session's network: its address and country headers, its device's
    signature once bound, and the answer's status kept for the record."""

    def __init__(self, inner: httpx.BaseTransport, *, ip: str, country: str) -> None:
        self._inner = inner
        self._ip = ip
        self._country = country
        self.signer: DeviceSigner | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["X-Forwarded-For"] = self._ip
        request.headers["CF-IPCountry"] = self._country
        if self.signer is not None and self.signer.device_id is not None:
            self.signer.sign_request(request)
        response = self._inner.handle_request(request)
        _last.status = response.status_code
        return response

    def close(self) -> None:
        """The inner transport is shared: the driver closes it."""


@dataclass
class _Session:
    client: BillfoldUser
    transport: _SessionTransport


@dataclass
class _World:
    """What setup made: ids by simulated index, and the signed-in sessions."""

    user_ids: dict[int, str] = field(default_factory=dict)
    handles: dict[int, str] = field(default_factory=dict)
    merchant_ids: dict[int, str] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tenant_id: str = ""
    mode: str = "test"


def _device_key(seed: int, tag: str, device: str) -> Ed25519PrivateKey:
    """A device's key, derived from the run so that a rerun binds the same keys."""
    material = hashlib.sha256(f"billfold-sim:{seed}:{tag}:{device}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(material)


class _Driver:
    def __init__(
        self,
        scenario: Scenario,
        *,
        base_url: str,
        api_key: str,
        http_transport: httpx.BaseTransport | None,
        tag: str,
    ) -> None:
        self.scenario = scenario
        self.currency = scenario.config.currency
        self.base_url = base_url
        self.tag = tag
        self.inner = http_transport or httpx.HTTPTransport(retries=0)
        self.api_transport = _SessionTransport(self.inner, ip="127.0.0.1", country="US")
        self.api = Billfold(
            api_key=api_key,
            base_url=base_url,
            http_transport=self.api_transport,
            retries_max=RETRIES_MAX,
        )
        self.world = _World()
        self.password = secrets.token_urlsafe(18)
        """The simulated customers' password (one per run; an attacker in the scenario
        knows it, as account takeover assumes)."""
        self.wrong_password = secrets.token_urlsafe(18)

    def close(self) -> None:
        for session in self.world.sessions.values():
            session.client.close()
        self.api.close()
        self.inner.close()

    # -- sessions

    def new_session(self, label: str, *, ip: str, country: str) -> _Session:
        transport = _SessionTransport(self.inner, ip=ip, country=country)
        client = BillfoldUser(
            tenant_id=self.world.tenant_id,
            mode="live" if self.world.mode == "live" else "test",
            base_url=self.base_url,
            http_transport=transport,
            retries_max=RETRIES_MAX,
        )
        session = _Session(client=client, transport=transport)
        with self.world.lock:
            previous = self.world.sessions.get(label)
            self.world.sessions[label] = session
        if previous is not None:
            previous.client.close()
        return session

    def session(self, label: str) -> _Session:
        with self.world.lock:
            return self.world.sessions[label]

    def bind_device(self, session: _Session, device: str) -> str:
        signer = DeviceSigner(_device_key(self.scenario.config.seed, self.tag, device))
        # Binding asks for the password again; the account takeover's attacker knows it.
        bound = session.client.me.devices.bind(
            name=f"sim {device}", signer=signer, password=self.password
        )
        session.transport.signer = signer
        return bound["id"]

    # -- setup

    def setup_merchant(self, index: int) -> dict[str, Any]:
        merchant = self.scenario.merchants[index]
        created = self.api.merchants.create(
            legal_name=f"Simulated {merchant.category} {index}",
            category_code=merchant.category_code,
            settlement_currency=self.currency,
        )
        with self.world.lock:
            self.world.merchant_ids[index] = created["id"]
        return {"kind": "merchant", "merchant": index, "merchant_id": created["id"]}

    def setup_customer(self, index: int) -> dict[str, Any]:
        customer = self.scenario.customers[index]
        handle = f"s{self.tag}c{index}"
        user = self.api.users.create(handle=handle, password=self.password)
        with self.world.lock:
            self.world.user_ids[index] = user["id"]
            self.world.handles[index] = handle
            self.world.tenant_id = user["tenant_id"]
            self.world.mode = user["mode"]
        self.api.wallets.set_kyc_tier(user["id"], tier=KYC_TIER)
        session = self.new_session(customer.session, ip=customer.ip, country=customer.country)
        session.client.sign_in(identifier=handle, password=self.password)
        self.bind_device(session, customer.session)
        payment = session.client.payments.top_up(
            amount=customer.funding_minor,
            currency=self.currency,
            method="card",
            instrument="4242424242424242",
        )
        return {
            "kind": "funding",
            "actor": index,
            "user_id": user["id"],
            "amount": customer.funding_minor,
            "payment_id": payment["id"],
            "state": payment["state"],
        }

    def await_settled(self, funding: Sequence[dict[str, Any]], *, timeout_s: float) -> None:
        """Until every funding top-up succeeded or failed (bounded by `timeout_s`)."""
        waiting = [record for record in funding if record.get("payment_id")]
        deadline = time.monotonic() + timeout_s
        while waiting and time.monotonic() < deadline:
            still = []
            for record in waiting:
                if record.get("state") not in _TERMINAL_TOP_UP_STATES:
                    session = self.session(self.scenario.customers[record["actor"]].session)
                    record["state"] = session.client.payments.get(record["payment_id"])["state"]
                if record["state"] not in _TERMINAL_TOP_UP_STATES:
                    still.append(record)
            waiting = still
            if waiting:
                time.sleep(SETTLE_POLL_S)

    # -- the run

    def perform(self, action: SimulatedAction) -> dict[str, Any]:
        record = _action_record(action)
        _last.status = None
        try:
            record.update(_ACTIONS[action.kind](self, action))
            record["status"] = _last.status
        except ApiError as error:
            record.update(_problem_fields(error))
        except BillfoldClientError as error:
            record.update(status=None, code="client_error", detail=str(error)[:200])
        return record

    def top_up(self, action: SimulatedAction) -> dict[str, Any]:
        payment = self.session(action.session).client.payments.top_up(
            amount=action.amount_minor,
            currency=self.currency,
            method="card",
            instrument=action.instrument or "",
        )
        return _payment_fields(payment)

    def p2p(self, action: SimulatedAction) -> dict[str, Any]:
        assert action.counterparty is not None
        payment = self.session(action.session).client.payments.send(
            recipient=self.world.user_ids[action.counterparty],
            amount=action.amount_minor,
            currency=self.currency,
        )
        return _payment_fields(payment)

    def merchant_payment(self, action: SimulatedAction) -> dict[str, Any]:
        assert action.counterparty is not None
        created = self.api.payments.create(
            merchant_id=self.world.merchant_ids[action.counterparty],
            amount=action.amount_minor,
            currency=self.currency,
            capture="automatic",
        )
        payment = self.session(action.session).client.payments.authorize(created["id"])
        return _payment_fields(payment)

    def withdrawal(self, action: SimulatedAction) -> dict[str, Any]:
        payment = self.session(action.session).client.payments.withdraw(
            amount=action.amount_minor,
            currency=self.currency,
            method="card",
            destination=action.instrument or "",
        )
        return _payment_fields(payment)

    def money_request(self, action: SimulatedAction) -> dict[str, Any]:
        assert action.counterparty is not None
        requested = self.session(action.session).client.payments.request_money(
            payer=self.world.user_ids[action.counterparty],
            amount=action.amount_minor,
            currency=self.currency,
        )
        payer = self.session(self.scenario.customers[action.counterparty].session)
        approved = payer.client.payments.approve_money_request(requested["id"])
        fields: dict[str, Any] = {"request_id": requested["id"], "payment_id": None}
        payment_id = approved.get("payment_id")
        if payment_id:
            fields["payment_id"] = payment_id
            fields["state"] = payer.client.payments.get(payment_id)["state"]
        return fields

    def login_failed(self, action: SimulatedAction) -> dict[str, Any]:
        transport = _SessionTransport(self.inner, ip=action.ip, country=action.ip_country)
        with BillfoldUser(
            tenant_id=self.world.tenant_id,
            mode="live" if self.world.mode == "live" else "test",
            base_url=self.base_url,
            http_transport=transport,
            retries_max=RETRIES_MAX,
        ) as client:
            client.sign_in(
                identifier=self.world.handles[action.actor], password=self.wrong_password
            )
        return {}

    def sign_in(self, action: SimulatedAction) -> dict[str, Any]:
        session = self.new_session(action.session, ip=action.ip, country=action.ip_country)
        session.client.sign_in(identifier=self.world.handles[action.actor], password=self.password)
        return {}

    def bind(self, action: SimulatedAction) -> dict[str, Any]:
        return {"device_id": self.bind_device(self.session(action.session), action.device)}

    def label(self, record: dict[str, Any]) -> bool:
        reference = record.get("payment_id") or record.get("decision_id")
        if not reference:
            return False
        self.api.risk_labels.create(reference=reference, fraud=bool(record["fraud"]))
        return True


_ACTIONS: dict[ActionKind, Callable[[_Driver, SimulatedAction], dict[str, Any]]] = {
    ActionKind.TOP_UP: _Driver.top_up,
    ActionKind.P2P: _Driver.p2p,
    ActionKind.MERCHANT_PAYMENT: _Driver.merchant_payment,
    ActionKind.WITHDRAWAL: _Driver.withdrawal,
    ActionKind.MONEY_REQUEST: _Driver.money_request,
    ActionKind.LOGIN_FAILED: _Driver.login_failed,
    ActionKind.SIGN_IN: _Driver.sign_in,
    ActionKind.BIND_DEVICE: _Driver.bind,
}


def _action_record(action: SimulatedAction) -> dict[str, Any]:
    return {
        "phase": "run",
        "index": action.index,
        "at_s": action.at_s,
        "kind": action.kind.value,
        "actor": action.actor,
        "counterparty": action.counterparty,
        "amount": action.amount_minor,
        "session": action.session,
        "device": action.device,
        "ip": action.ip,
        "ip_country": action.ip_country,
        "fraud": action.fraud,
        "pattern": None if action.pattern is None else action.pattern.value,
        "episode": action.episode,
        "status": None,
        "payment_id": None,
        "state": None,
        "code": None,
        "decision_id": None,
    }


def _payment_fields(payment: Mapping[str, Any]) -> dict[str, Any]:
    fields = {"payment_id": payment.get("id"), "state": payment.get("state")}
    decision = payment.get("decision_id") or payment.get("risk_decision_id")
    if decision is None and isinstance(payment.get("risk"), Mapping):
        decision = payment["risk"].get("decision_id")
    if decision is not None:
        fields["decision_id"] = decision
    return fields


def _problem_fields(error: ApiError) -> dict[str, Any]:
    extensions = error.extensions
    fields: dict[str, Any] = {
        "status": error.status,
        "code": error.code,
        "decision_id": extensions.get("decision_id"),
        "detail": (error.detail or error.title)[:_DETAIL_LENGTH_MAX],
    }
    for name in ("payment_id", "state"):
        if isinstance(extensions.get(name), str):
            fields[name] = extensions[name]
    return fields


def _setup_record(fields: dict[str, Any]) -> dict[str, Any]:
    return {"phase": "setup", "fraud": False, "pattern": None, **fields}


@contextmanager
def _progress(enabled: bool, console: Console | None) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def _run_lanes(
    pool: ThreadPoolExecutor,
    actions: Sequence[SimulatedAction],
    perform: Callable[[SimulatedAction], dict[str, Any]],
    *,
    window: int,
    advance: Callable[[], None],
) -> list[dict[str, Any]]:
    """Submit in simulated order; an action first waits for its lane's previous one. At
    most `window` actions are submitted and unfinished at once. A waiting action's
    predecessor was submitted earlier, so it is running or done: no deadlock."""
    slots = threading.BoundedSemaphore(window)
    last_of_lane: dict[str, Future[dict[str, Any]]] = {}
    futures: list[Future[dict[str, Any]]] = []

    def after(previous: Future[dict[str, Any]] | None, action: SimulatedAction) -> dict[str, Any]:
        try:
            if previous is not None:
                previous.exception()  # waits; the result is the other action's
            return perform(action)
        finally:  # here, not in a done callback: those may run after `result()` returned
            slots.release()
            advance()

    for action in actions:
        slots.acquire()
        future = pool.submit(after, last_of_lane.get(action.lane), action)
        last_of_lane[action.lane] = future
        futures.append(future)
    return [future.result() for future in futures]


def run_simulation(
    scenario: Scenario,
    *,
    base_url: str,
    api_key: str,
    out: Path | None = None,
    concurrency: int = 8,
    label: bool = False,
    http_transport: httpx.BaseTransport | None = None,
    progress: bool = True,
    console: Console | None = None,
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
) -> SimulationReport:
    """Set the scenario's world up through the API, play its actions, optionally post the
    ground truth as labels (`POST /v1/risk/labels`), and write the records to `out` (JSON
    lines). The API key needs `users:admin`, `wallets:read`, `payments:write` (and
    `risk:write` to label). `http_transport` replaces the network (an in-process app)."""
    if not 1 <= concurrency <= CONCURRENCY_MAX:
        raise ValueError(f"concurrency must be between 1 and {CONCURRENCY_MAX}")
    if not api_key.startswith(TEST_KEY_PREFIX):
        raise ValueError("the simulator signs users up and moves money: use a test-mode key")
    tag = uuid.uuid4().hex[:6]  # handles are unique per tenant: one namespace per run
    driver = _Driver(
        scenario, base_url=base_url, api_key=api_key, http_transport=http_transport, tag=tag
    )
    started = time.perf_counter()
    try:
        with (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sim") as pool,
            _progress(progress, console) as bar,
        ):
            setup = _setup(driver, pool, bar, settle_timeout_s=settle_timeout_s)
            run_started = time.perf_counter()
            task = None if bar is None else bar.add_task("run", total=len(scenario.actions))
            results = _run_lanes(
                pool,
                scenario.actions,
                driver.perform,
                window=concurrency * 4,
                advance=(lambda: None)
                if bar is None or task is None
                else (lambda: bar.advance(task)),
            )
            run_elapsed_s = time.perf_counter() - run_started
            labelled = _label(driver, pool, results) if label else 0
    finally:
        driver.close()
    report = SimulationReport(
        records=[*setup, *results],
        elapsed_s=time.perf_counter() - started,
        run_elapsed_s=run_elapsed_s,
        labels_posted=labelled,
        tenant_id=driver.world.tenant_id,
    )
    if out is not None:
        write_records(out, report.records)
    return report


def _setup(
    driver: _Driver, pool: ThreadPoolExecutor, bar: Progress | None, *, settle_timeout_s: float
) -> list[dict[str, Any]]:
    scenario = driver.scenario
    total = len(scenario.merchants) + len(scenario.customers)
    task = None if bar is None else bar.add_task("setup", total=total)

    def step(function: Callable[[int], dict[str, Any]], index: int) -> dict[str, Any]:
        try:
            return _setup_record(function(index))
        finally:
            if bar is not None and task is not None:
                bar.advance(task)

    merchants = list(
        pool.map(lambda index: step(driver.setup_merchant, index), range(len(scenario.merchants)))
    )
    customers = list(
        pool.map(lambda index: step(driver.setup_customer, index), range(len(scenario.customers)))
    )
    driver.await_settled(customers, timeout_s=settle_timeout_s)
    return [*merchants, *customers]


def _label(driver: _Driver, pool: ThreadPoolExecutor, records: list[dict[str, Any]]) -> int:
    money = [record for record in records if record.get("payment_id") or record.get("decision_id")]

    def post(record: dict[str, Any]) -> bool:
        try:
            record["labelled"] = driver.label(record)
        except ApiError as error:
            record["labelled"] = False
            record["label_error"] = error.code
        return bool(record["labelled"])

    return sum(pool.map(post, money))


def write_records(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, separators=(",", ":"), sort_keys=True))
            file.write("\n")


def read_records(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def print_summary(report: SimulationReport, console: Console) -> None:
    """Three tables: actions by kind, fraud by pattern, outcomes."""
    run = [record for record in report.records if record["phase"] == "run"]
    kinds = Counter(record["kind"] for record in run)
    failures = Counter(record["kind"] for record in run if (record.get("status") or 0) >= 400)
    table = Table(title="Actions by kind")
    for column in ("kind", "actions", "refused"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, count in sorted(kinds.items()):
        table.add_row(kind, str(count), str(failures[kind]))
    console.print(table)
    evaluation = report.evaluation()
    patterns = Table(title="Fraud by pattern (money movements)")
    for column in ("pattern", "fraud", "flagged", "blocked", "challenged", "review", "recall"):
        patterns.add_column(column, justify="right" if column != "pattern" else "left")
    for pattern, matrices in sorted(evaluation.by_pattern.items()):
        flagged = matrices["flagged"]
        patterns.add_row(
            pattern,
            str(flagged.true_positives + flagged.false_negatives),
            *(str(matrices[name].true_positives) for name in _OUTCOME_COLUMNS),
            _ratio(flagged.recall),
        )
    console.print(patterns)
    outcomes = Table(title="Outcomes")
    for column in ("outcome", "tp", "fp", "tn", "fn", "precision", "recall", "fpr"):
        outcomes.add_column(column, justify="right" if column != "outcome" else "left")
    for name, matrix in evaluation.overall.items():
        outcomes.add_row(
            name,
            str(matrix.true_positives),
            str(matrix.false_positives),
            str(matrix.true_negatives),
            str(matrix.false_negatives),
            _ratio(matrix.precision),
            _ratio(matrix.recall),
            _ratio(matrix.false_positive_rate),
        )
    console.print(outcomes)
    console.print(
        f"{len(run)} actions in {report.run_elapsed_s:.1f} s ({report.actions_per_s:.0f}/s),"
        f" {report.labels_posted} labels posted"
    )


_OUTCOME_COLUMNS = ("flagged", "blocked", "challenged", "review")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
