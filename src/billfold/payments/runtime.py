"""What payment flows need, in one object on `app.state.payments`: the ledger, the unit of
work, the wallet book, the providers, the fee quoter and the bounded settings."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from billfold.connectors.sandbox import SandboxProvider
from billfold.connectors.senders import HttpNotificationSender, NotificationSender
from billfold.connectors.types import Provider
from billfold.fx.rates import NoRatesSource, RatesSource
from billfold.fx.service import FxConfig
from billfold.identity.types import Mode
from billfold.keys.keyring import Keyring
from billfold.kit.db import UnitOfWork
from billfold.kit.settings import Settings
from billfold.ledger.ledger import Ledger
from billfold.payments.errors import LiveProviderUnavailable, UnknownProvider
from billfold.payments.fees.service import schedule_fee_quoter
from billfold.payments.fees.types import FeeQuoter
from billfold.risk.types import RiskDecider
from billfold.wallets.accounts import PROVIDER_NAMES
from billfold.wallets.service import WalletBook

__all__ = [
    "PROVIDER_FOR_METHOD",
    "PaymentsRuntime",
    "ResponseEnforcer",
    "close_payments",
    "close_runtime",
    "install_payments",
    "payments_runtime",
    "sandbox_providers",
]


PROVIDER_FOR_METHOD = {"card": "sandbox_card", "bank_transfer": "sandbox_bank"}
"""The provider of each top-up and withdrawal method (see `PaymentsRuntime.provider_for`)."""

ResponseEnforcer = Callable[[Sequence[uuid.UUID]], Awaitable[object]]
"""Called with the ids of the automated responses a committed decision applied."""


@dataclass(slots=True)
class PaymentsRuntime:
    book: WalletBook
    providers: dict[str, Provider]
    fee_quoter: FeeQuoter = schedule_fee_quoter
    """The tenant's (or merchant's) stored fee schedules; no schedule charges nothing."""
    authorization_hold_s: int = 7 * 86_400
    claim_grace_s: float = 60.0
    """How old an authorization's claim must be before recovery completes or releases it."""
    provider_timeout_s: float = 10.0
    reconcile_after_s: float = 900.0
    """How long a top-up or withdrawal the provider answered without an outcome
    (`processing` with a reference, or `requires_action`) waits for its notification before
    recovery asks the provider's status, and then between two asks."""
    action_timeout_s: float = 86_400.0
    """How long a top-up waits in `requires_action` for its payer's 3-D Secure challenge:
    past it, a reconciliation whose provider status still says `requires_action` ends it
    (`authentication_abandoned`). Without it, an abandoned challenge kept its pending amount
    and was asked about once per `reconcile_after_s` for ever."""
    webhook_tolerance_s: int = 300
    step_up_threshold_minor: int | None = None
    sandboxes: dict[str, SandboxProvider] = field(default_factory=dict)
    sandbox_live: bool = False
    """Whether the sandboxes serve live mode too (`payments_sandbox_live`, development)."""
    fx_rates: RatesSource = field(default_factory=NoRatesSource)
    """Where cross-currency payments quote a rate when the payer brings no quote."""
    fx_config: FxConfig = field(
        default_factory=lambda: FxConfig(spread_bps_default=0, quote_ttl_s=30)
    )
    risk: RiskDecider | None = None
    """Decides every movement before it reaches the ledger (`app.state.risk`); None: no
    engine configured — every movement is allowed and no decision is stored."""
    review_hold_s: int = 3 * 86_400
    """How long a movement held for review stays held before recovery voids it."""
    risk_lower_limits_bps: int = 1_000
    """What a ``lower_limits`` automated response lowers the user's limits to (bps)."""
    keyring: Keyring | None = None
    """Seals the instrument of a top-up parked for review (`app.state.keyring`)."""
    enforce_responses: ResponseEnforcer | None = None
    """Freezes the ledger accounts of `freeze_account` responses once the decision that
    applied them has committed (the application installs
    ``flows.risk_cases.enforce_responses``); None: the recovery sweep does it."""

    @property
    def unit_of_work(self) -> UnitOfWork:
        return self.book.unit_of_work

    def provider_for(self, method: str, mode: Mode) -> str:
        """The provider that moves `method`'s money in `mode`: the sandboxes serve test
        mode, and live mode only when `sandbox_live` says so."""
        name = PROVIDER_FOR_METHOD[method]
        if mode is Mode.LIVE and name in self.sandboxes and not self.sandbox_live:
            raise LiveProviderUnavailable(
                f"Live-mode {method} payments need a live payment provider; this deployment"
                " has only the sandbox, which moves test-mode money.",
                method=method,
            )
        return name

    def provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            raise UnknownProvider(f"No provider {name[:32]!r}.")
        return provider

    @classmethod
    def from_settings(
        cls, settings: Settings, *, book: WalletBook, sender: NotificationSender
    ) -> PaymentsRuntime:
        sandboxes = sandbox_providers(settings, sender)
        return cls(
            book=book,
            providers=dict(sandboxes),
            authorization_hold_s=settings.payments_authorization_hold_s,
            claim_grace_s=settings.payments_claim_grace_s,
            provider_timeout_s=settings.payments_provider_timeout_s,
            reconcile_after_s=settings.payments_reconcile_after_s,
            action_timeout_s=settings.payments_action_timeout_s,
            webhook_tolerance_s=settings.payments_webhook_tolerance_s,
            step_up_threshold_minor=settings.payments_step_up_threshold_minor,
            sandboxes=sandboxes,
            sandbox_live=settings.payments_sandbox_live,
            fx_config=FxConfig.from_settings(settings),
            review_hold_s=settings.risk_review_hold_s,
            risk_lower_limits_bps=settings.risk_lower_limits_bps,
        )


def sandbox_providers(settings: Settings, sender: NotificationSender) -> dict[str, SandboxProvider]:
    secret = settings.payments_sandbox_webhook_secret.get_secret_value().encode()
    return {name: SandboxProvider(name, secret=secret, sender=sender) for name in PROVIDER_NAMES}


def payments_runtime(
    settings: Settings, *, ledger: Ledger, unit_of_work: UnitOfWork
) -> PaymentsRuntime:
    """A runtime outside the app (`billfold worker` applies provider notifications)."""
    sender = HttpNotificationSender(
        settings.payments_sandbox_webhook_url or f"http://{settings.host}:{settings.port}",
        delay_s=settings.payments_sandbox_notification_delay_s,
        timeout_s=settings.payments_provider_timeout_s,
    )
    book = WalletBook(ledger, unit_of_work)
    return PaymentsRuntime.from_settings(settings, book=book, sender=sender)


async def close_runtime(runtime: PaymentsRuntime) -> None:
    for sandbox in runtime.sandboxes.values():
        sender = sandbox.sender
        if isinstance(sender, HttpNotificationSender):
            await sender.close()
            return


def install_payments(app: Any, settings: Settings, ledger: Ledger) -> PaymentsRuntime:
    """Set up `app.state.wallet_book` and `app.state.payments` (from the lifespan, once the
    unit of work and the ledger are open). A test may put its own `notification_sender`
    on `app.state` first (a `RecordingSender`, to deliver notifications itself).

    The risk decider is `app.state.risk` (``install_risk``'s engine) when set: call
    ``install_risk`` first (or set `runtime.risk` afterwards); without one, no engine is
    configured and every movement is allowed, nothing stored."""
    sender = getattr(app.state, "notification_sender", None)
    if sender is None:
        base_url = (
            settings.payments_sandbox_webhook_url or f"http://{settings.host}:{settings.port}"
        )
        sender = HttpNotificationSender(
            base_url,
            delay_s=settings.payments_sandbox_notification_delay_s,
            timeout_s=settings.payments_provider_timeout_s,
        )
        app.state.notification_sender = sender
    book = WalletBook(ledger, app.state.unit_of_work)
    app.state.wallet_book = book
    runtime = PaymentsRuntime.from_settings(settings, book=book, sender=sender)
    rates = getattr(app.state, "fx_rates", None)  # install_fx's (the same rates as /v1/fx)
    if rates is not None:
        runtime.fx_rates = rates
    runtime.risk = getattr(app.state, "risk", None)
    runtime.keyring = getattr(app.state, "keyring", None)
    app.state.payments = runtime
    return runtime


async def close_payments(app: Any) -> None:
    """Stop notifications still on their way (the sandbox's HTTP deliveries)."""
    sender = getattr(app.state, "notification_sender", None)
    if isinstance(sender, HttpNotificationSender):
        await sender.close()
