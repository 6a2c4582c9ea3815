"""The three clients, one per credential: `Billfold` (API key, the tenant's backend),
`BillfoldUser` (an end user's rotating tokens), `BillfoldOperator` (an operator session)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

import httpx

from billfold.client._auth import ApiKeyCredential, OperatorCredential, UserTokens
from billfold.client._transport import RETRIES_MAX, TIMEOUT_S, Credential, Transport
from billfold.client.errors import NotSignedInError
from billfold.client.resources.api_keys import ApiKeys
from billfold.client.resources.approvals import Approvals
from billfold.client.resources.audit import Audit, OperatorAudit
from billfold.client.resources.events import Events, WebhookEndpoints
from billfold.client.resources.fees import FeeQuotes, FeeSchedules
from billfold.client.resources.fx import Fx
from billfold.client.resources.keys import SigningKeys
from billfold.client.resources.ledger import Accounts, Transfers
from billfold.client.resources.me import MeResource
from billfold.client.resources.operators import OperatorCreation, Operators
from billfold.client.resources.payments import (
    Connectors,
    Disputes,
    MyPayments,
    Payments,
    SplitRules,
)
from billfold.client.resources.privacy import Consents, PiiVault, TokenVault
from billfold.client.resources.risk import RiskDecisions, RiskRules
from billfold.client.resources.risk_labels import RiskLabels
from billfold.client.resources.risk_models import RiskModels
from billfold.client.resources.risk_profiles import Risk
from billfold.client.resources.risk_review import RiskCases, RiskResponses
from billfold.client.resources.users import Users
from billfold.client.resources.wallets import Merchants, Wallets
from billfold.client.types import (
    JSONObject,
    Operator,
    OperatorSession,
    PasskeyOptions,
    SignIn,
    Tokens,
)

__all__ = ["DEFAULT_BASE_URL", "Billfold", "BillfoldOperator", "BillfoldUser"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
_Self = TypeVar("_Self", bound="_Client")
_EPOCH = "1970-01-01T00:00:00+00:00"


class _Client:
    """A transport, `request()` for any endpoint, `close()` and the context manager."""

    def __init__(
        self,
        credential: Credential,
        *,
        base_url: str,
        timeout_s: float,
        retries_max: int,
        http_transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self._transport = Transport(
            credential=credential,
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
            sleep=sleep,
            clock=clock,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Any other endpoint, with the same credential, retries, keys and typed errors."""
        return self._transport.request(
            method.upper(), path, json=json, params=params, idempotency_key=idempotency_key
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Billfold(_Client):
    """The tenant's backend, with an API key. Use it as a context manager, or `close()`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            ApiKeyCredential(api_key),
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
            sleep=sleep,
            clock=clock,
        )
        self.accounts = Accounts(self._transport)
        self.transfers = Transfers(self._transport)
        self.api_keys = ApiKeys(self._transport)
        self.users = Users(self._transport)
        self.operators = OperatorCreation(self._transport)
        """Creating operators takes a *live* key with `tenant:admin`."""
        self.fee_schedules = FeeSchedules(self._transport)
        self.fee_quotes = FeeQuotes(self._transport)
        self.fx = Fx(self._transport)
        self.signing_keys = SigningKeys(self._transport)
        self.pii = PiiVault(self._transport)
        self.consents = Consents(self._transport)
        self.tokens = TokenVault(self._transport)
        self.audit = Audit(self._transport)
        """The audit log takes a *live* key with `audit:read`."""
        self.events = Events(self._transport)
        self.webhook_endpoints = WebhookEndpoints(self._transport)
        self.wallets = Wallets(self._transport)
        self.merchants = Merchants(self._transport)
        self.payments = Payments(self._transport)
        self.disputes = Disputes(self._transport)
        self.split_rules = SplitRules(self._transport)
        self.connectors = Connectors(self._transport)
        self.risk_decisions = RiskDecisions(self._transport)
        """Risk decisions take a key with `risk:read`."""
        self.risk_labels = RiskLabels(self._transport)
        """Fraud labels (`risk:write`): a simulated workload's ground truth."""
        self.risk = Risk(self._transport)


class BillfoldUser(_Client):
    """An end user of one tenant's wallet: sign in (password, then a second factor when
    enrolled), then call `me`; the access token is refreshed transparently.

    Pass `refresh_token` to resume a session kept from before, and `on_tokens` to store
    each new pair (the refresh token changes at every refresh: keep the latest)."""

    def __init__(
        self,
        *,
        tenant_id: str,
        mode: Literal["test", "live"],
        base_url: str = DEFAULT_BASE_URL,
        refresh_token: str | None = None,
        on_tokens: Callable[[Tokens], None] | None = None,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = UserTokens(clock=clock, on_tokens=on_tokens)
        super().__init__(
            self._tokens,
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
            sleep=sleep,
            clock=clock,
        )
        self._tokens.refresher = self._spend_refresh_token
        self.tenant_id = tenant_id
        self.mode = mode
        self.mfa_token: str | None = None
        """The pending second step's token after a sign-in answered `mfa_required`."""
        self.me = MeResource(self._transport)
        self.payments = MyPayments(self._transport)
        """The user's wallets, top-ups, withdrawals, P2P, merchant payments and requests."""
        if refresh_token is not None:
            self._tokens.set(_resumed(refresh_token), notify=False)

    @property
    def tokens(self) -> Tokens | None:
        """The current token pair (None before signing in and after the session ended)."""
        return self._tokens.tokens

    def sign_in(
        self, *, identifier: str, password: str, totp: Callable[[], str] | None = None
    ) -> SignIn:
        """The password step. When the user has a second factor the answer's `status` is
        `mfa_required`: then `complete_mfa(...)`, or pass `totp` (a function returning the
        current code) to have it done here."""
        body = {
            "tenant_id": self.tenant_id,
            "mode": self.mode,
            "identifier": identifier,
            "password": password,
        }
        answer = cast(SignIn, self._public("/v1/sessions", body))
        if answer["status"] == "authenticated" and answer["tokens"] is not None:
            self._tokens.set(answer["tokens"])
            self.mfa_token = None
        elif answer["mfa"] is not None:
            self.mfa_token = answer["mfa"]["mfa_token"]
            if totp is not None:
                self.complete_mfa(totp_code=totp())
                return {"status": "authenticated", "tokens": self.tokens, "mfa": None}
        return answer

    def mfa_passkey_options(self) -> PasskeyOptions:
        """WebAuthn options to answer the pending second step with a passkey."""
        body = {"mfa_token": self._pending_mfa_token()}
        return cast(PasskeyOptions, self._public("/v1/sessions/mfa/passkey-options", body))

    def complete_mfa(
        self,
        *,
        totp_code: str | None = None,
        recovery_code: str | None = None,
        passkey: JSONObject | None = None,
    ) -> Tokens:
        """The second step, with exactly one answer."""
        answers = {"totp_code": totp_code, "recovery_code": recovery_code, "passkey": passkey}
        given = {name: value for name, value in answers.items() if value is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of totp_code, recovery_code and passkey")
        body = {"mfa_token": self._pending_mfa_token(), **given}
        tokens = cast(Tokens, self._public("/v1/sessions/mfa", body))
        self._tokens.set(tokens)
        self.mfa_token = None
        return tokens

    def refresh(self) -> Tokens:
        """Rotate the token pair now (it happens on its own when the access token is
        about to expire). Raises `RefreshTokenInvalidError` when the session is over."""
        return self._tokens.refresh_now()

    def log_out(self) -> None:
        """End this session on the server and forget the tokens."""
        self.me.log_out()
        self._tokens.set(None)

    def _spend_refresh_token(self, refresh_token: str) -> Tokens:
        body = {"refresh_token": refresh_token}
        return cast(Tokens, self._public("/v1/sessions/refresh", body))

    def _public(self, path: str, body: JSONObject) -> Any:
        # Not replay_safe: the server cannot deduplicate these (no credential to scope by).
        return self._transport.request(
            "POST", path, json=body, authenticated=False, replay_safe=False
        )

    def _pending_mfa_token(self) -> str:
        if self.mfa_token is None:
            raise NotSignedInError("No second step is pending: sign_in first.")
        return self.mfa_token


def _resumed(refresh_token: str) -> Tokens:
    """A pair holding only a refresh token: the first call refreshes it."""
    return {
        "session_id": "",
        "token_type": "Bearer",
        "access_token": "",
        "access_token_expires_at": _EPOCH,
        "refresh_token": refresh_token,
        "refresh_token_expires_at": _EPOCH,
    }


class BillfoldOperator(_Client):
    """A back-office operator of one tenant: `log_in`, then `operators`, `approvals`,
    `audit`, `risk_cases`, `risk_responses` and `risk_models`.

    Sessions last an hour and are not refreshed: log in again when one ends."""

    def __init__(
        self,
        *,
        tenant_id: str,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        timeout_s: float = TIMEOUT_S,
        retries_max: int = RETRIES_MAX,
        http_transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = OperatorCredential()
        self._session.token = token
        super().__init__(
            self._session,
            base_url=base_url,
            timeout_s=timeout_s,
            retries_max=retries_max,
            http_transport=http_transport,
            sleep=sleep,
            clock=clock,
        )
        self.tenant_id = tenant_id
        self.operators = Operators(self._transport)
        self.approvals = Approvals(self._transport)
        self.audit = OperatorAudit(self._transport)
        """The tenant's audit log (the permission `audit.read`)."""
        self.risk_rules = RiskRules(self._transport)
        self.risk_decisions = RiskDecisions(self._transport)
        self.risk_cases = RiskCases(self._transport)
        """The review queue of held movements (the permission `cases.review`)."""
        self.risk_responses = RiskResponses(self._transport)
        """Automated risk responses, applied and reversed with four eyes."""
        self.risk_models = RiskModels(self._transport)
        """Risk model versions, training, promotion and drift alerts."""

    @property
    def token(self) -> str | None:
        return self._session.token

    def log_in(self, *, email: str, password: str) -> OperatorSession:
        body = {"tenant_id": self.tenant_id, "email": email, "password": password}
        answer = cast(
            OperatorSession,
            self._transport.request(
                "POST", "/v1/operators/login", json=body, authenticated=False, replay_safe=False
            ),
        )
        self._session.token = answer["token"]
        return answer

    def log_out(self) -> None:
        """End this session now and forget its token."""
        self._transport.request("POST", "/v1/operators/logout")
        self._session.token = None

    def me(self) -> Operator:
        return cast(Operator, self._transport.request("GET", "/v1/operators/me"))

    def change_password(self, *, current_password: str, new_password: str) -> Operator:
        """Change the password (required after a one-time one); other sessions end."""
        body = {"current_password": current_password, "new_password": new_password}
        answer = self._transport.request("POST", "/v1/operators/me/password", json=body)
        return cast(Operator, answer)
