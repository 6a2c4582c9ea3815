"""One settings class for the whole process, read from `BILLFOLD_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MEBIBYTE", "Settings", "get_settings"]

MEBIBYTE = 1024 * 1024
# The bounds below repeat the kit.http modules' limits as literals: importing those modules
# here would load the web framework into every process that reads its settings.
_REQUEST_BODY_MAX_BYTES_LIMIT = 1024 * MEBIBYTE
_RESPONSE_BODY_MAX_BYTES_LIMIT = 64 * MEBIBYTE
_IDEMPOTENCY_TTL_S_MIN = 86_400
_IDEMPOTENCY_TTL_S_MAX = 30 * 86_400
_RATE_LIMIT_MAX = 10_000


class Settings(BaseSettings):
    """Every knob Billfold has. Each one is bounded: a limit on everything."""

    model_config = SettingsConfigDict(env_prefix="BILLFOLD_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///billfold.db",
        description="sqlite:///PATH (embedded default) or postgresql://USER@HOST/DB.",
    )
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_connect_timeout_s: float = Field(default=10.0, gt=0, le=120)

    ledger_batch_window_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="How long the batching writer waits for more transfers before applying.",
    )
    ledger_batch_size_max: int = Field(
        default=8190,
        ge=1,
        le=8190,
        description="Most transfers applied in one database transaction.",
    )
    ledger_queue_size_max: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Most transfers waiting in the batching writer before callers are refused.",
    )
    ledger_expiry_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often pending-transfer timeouts are swept."
    )
    ledger_expiry_grace_s: int = Field(
        default=60,
        ge=0,
        le=86_400,
        description="`ledger verify` reports open pending transfers this long past their timeout.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes `billfold serve` runs (PostgreSQL only; SQLite takes one).",
    )
    shutdown_grace_s: int = Field(
        default=15,
        ge=1,
        le=3600,
        description="How long a stopping `billfold serve` waits for open requests, live"
        " streams included, before it closes them.",
    )
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"

    request_body_max_bytes: int = Field(
        default=MEBIBYTE,
        ge=1024,
        le=_REQUEST_BODY_MAX_BYTES_LIMIT,
        description="Largest request body on every route but the batch ones (413 beyond).",
    )
    request_body_batch_max_bytes: int = Field(
        default=20 * MEBIBYTE,
        ge=1024,
        le=_REQUEST_BODY_MAX_BYTES_LIMIT,
        description=(
            "Largest body of a batch route (8,190 transfers the ledger accepts fit,"
            " pretty-printed, each at its longest)."
        ),
    )

    idempotency_ttl_s: int = Field(
        default=_IDEMPOTENCY_TTL_S_MIN,
        ge=_IDEMPOTENCY_TTL_S_MIN,
        le=_IDEMPOTENCY_TTL_S_MAX,
        description="How long an Idempotency-Key is remembered (at least 24 hours).",
    )
    idempotency_lease_s: int = Field(
        default=60,
        ge=1,
        le=3600,
        description="How long a running request holds its key before a retry may take over.",
    )
    idempotency_response_max_bytes: int = Field(
        default=4 * MEBIBYTE,
        ge=0,
        le=_RESPONSE_BODY_MAX_BYTES_LIMIT,
        description="Largest response kept for replay; a larger one releases its key.",
    )
    idempotency_purge_interval_s: float = Field(
        default=300, ge=1, le=86_400, description="How often expired keys are deleted."
    )

    redis_url: SecretStr | None = Field(
        default=None,
        description="redis://… for rate limits shared by every process; in-process if unset.",
    )
    redis_timeout_s: float = Field(default=0.5, gt=0, le=30)
    rate_limit_credential_requests: int = Field(
        default=6000,
        ge=1,
        le=_RATE_LIMIT_MAX,
        description="Requests one API key may make per rate_limit_window_s (429 beyond).",
    )
    rate_limit_window_s: float = Field(default=60, ge=0.001, le=86_400)
    rate_limit_sign_in_requests: int = Field(
        default=100,
        ge=1,
        le=_RATE_LIMIT_MAX,
        description="Requests to the public sign-in routes one client address may make per"
        " rate_limit_window_s (429 beyond).",
    )
    rate_limit_keys_max: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Credentials the in-process limiter tracks at once (oldest dropped).",
    )

    fx_spread_bps_default: int = Field(
        default=50,
        ge=0,
        le=2000,
        description="Spread on FX quotes for tenants that set none, in basis points (0.50%).",
    )
    fx_quote_ttl_s: int = Field(
        default=30, ge=1, le=3600, description="How long an FX quote's rate stays locked."
    )
    fx_rates_file: str | None = Field(
        default=None,
        max_length=4096,
        description="Path of an ECB eurofxref XML file; FX quotes are refused (503) without one.",
    )
    fx_rates_refresh_interval_s: float = Field(
        default=300, ge=1, le=86_400, description="How often the rates file is checked for change."
    )
    audit_checkpoint_interval_s: float = Field(
        default=300, ge=1, le=86_400, description="How often `serve` signs due checkpoints."
    )
    audit_checkpoint_entries_max: int = Field(
        default=100_000,
        ge=1,
        le=1_000_000,
        description="Most entries one audit checkpoint covers (an inclusion proof reads them).",
    )
    embedded_worker: bool = Field(
        default=True,
        description="`billfold serve` runs the worker (outbox dispatch, webhooks, expiries,"
        " purges) in its own process; set false when `billfold worker` runs separately.",
    )
    nats_url: SecretStr | None = Field(
        default=None, description="nats://… to publish events to JetStream; off if unset."
    )
    nats_stream: str = Field(default="BILLFOLD_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    nats_subject_prefix: str = Field(
        default="billfold.events",
        pattern=r"^[A-Za-z0-9_-]{1,32}(\.[A-Za-z0-9_-]{1,32}){0,3}$",
        description="Subjects are <prefix>.<tenant>.<mode>.<type>; the stream takes <prefix>.>",
    )
    nats_timeout_s: float = Field(default=5.0, gt=0, le=60)
    events_batch_size_max: int = Field(
        default=1000, ge=1, le=8190, description="Most events one dispatch round handles."
    )
    events_poll_interval_s: float = Field(
        default=0.1, gt=0, le=60, description="How long an idle dispatcher waits before looking."
    )
    events_partitions_per_claim: int = Field(
        default=16,
        ge=1,
        le=16,
        description="Partitions (of 16) one worker claims per round; lower it to spread"
        " the work of several workers.",
    )
    events_stream_poll_interval_s: float = Field(
        default=0.5, gt=0, le=30, description="How often a live event stream looks for news."
    )
    events_stream_duration_max_s: float = Field(
        default=300,
        gt=0,
        le=3600,
        description="A live stream ends after this; the client resumes with Last-Event-ID.",
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Development only: allow http:// and private, loopback or link-local"
        " webhook targets.",
    )
    webhooks_timeout_s: float = Field(default=10.0, gt=0, le=30)
    webhooks_concurrency: int = Field(default=32, ge=1, le=1024)
    webhooks_batch_size_max: int = Field(default=256, ge=1, le=8190)
    webhooks_lease_s: float = Field(
        default=60, ge=1, le=3600, description="A claimed delivery's lease before a retry."
    )
    webhooks_response_max_bytes: int = Field(default=1024, ge=0, le=4096)
    webhooks_secret_overlap_s: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="How long the previous secret keeps signing after a rotation.",
    )
    webhooks_endpoints_max: int = Field(default=20, ge=1, le=1000)
    webhooks_disable_after_days: float = Field(
        default=5,
        ge=0,
        le=365,
        description="An endpoint whose every attempt failed for this long is disabled, and a"
        " com.billfold.webhook_endpoint.disabled.v1 event says so (0: never).",
    )
    webhooks_delivery_retention_days: int = Field(
        default=30,
        ge=0,
        le=3650,
        description="Days a succeeded or dead-lettered delivery and its attempts stay in the"
        " delivery log (0: kept forever).",
    )
    payments_authorization_hold_s: int = Field(
        default=7 * 86_400,
        ge=60,
        le=30 * 86_400,
        description="How long a merchant payment's authorization holds the payer's money.",
    )
    payments_provider_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Longest wait for a payment provider's answer."
    )
    payments_sandbox_webhook_secret: SecretStr = Field(
        default=SecretStr("whsec_sandbox_not_for_live_money"),
        description="HMAC-SHA256 key the sandbox providers sign their notifications with.",
    )
    payments_sandbox_webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Base URL the sandbox posts notifications to; http://HOST:PORT if unset.",
    )
    payments_sandbox_live: bool = Field(
        default=False,
        description="Development only: let the sandbox providers serve live-mode top-ups and"
        " withdrawals. Off, live mode has no provider (422 `live_provider_unavailable`): a"
        " sandbox confirms any test card, and would mint live money.",
    )
    payments_sandbox_notification_delay_s: float = Field(
        default=0.5, ge=0, le=60, description="How long the sandbox waits before it notifies."
    )
    payments_step_up_threshold_minor: int | None = Field(
        default=None,
        ge=0,
        le=2**62,
        description="Above this amount (minor units) P2P transfers and withdrawals need a"
        " step-up token bound to the amount, currency and payee; unset: never.",
    )
    risk_lower_limits_bps: int = Field(
        default=1_000,
        ge=0,
        le=10_000,
        description="What an automated lower_limits risk response leaves of each spending"
        " limit, in basis points (1000: a tenth).",
    )
    risk_cases_recovery_interval_s: float = Field(
        default=60,
        ge=1,
        le=86_400,
        description="How often the worker retries review cases whose held money did not move"
        " yet, expires cases past their hold and enforces freezes a crash left pending.",
    )
    payments_resume_interval_s: float = Field(
        default=60,
        ge=1,
        le=86_400,
        description="How often the embedded worker re-drives P2P payments and refunds a crash"
        " left between their steps.",
    )
    payments_claim_grace_s: float = Field(
        default=60,
        ge=0,
        le=86_400,
        description="How old a merchant payment's claim (payer checked against their limits,"
        " hold not yet recorded) must be before the recovery loop completes or releases it.",
    )
    payments_webhook_tolerance_s: int = Field(
        default=300, ge=1, le=86_400, description="Oldest signature timestamp still accepted."
    )
    payments_reconcile_after_s: float = Field(
        default=900,
        ge=60,
        le=86_400,
        description="How long a top-up or withdrawal the provider answered without an outcome"
        " (processing with a provider reference, or a 3-D Secure challenge) waits for its"
        " notification before the recovery loop asks the provider's status, and then between"
        " two asks: a lost notification is recovered from the status.",
    )
    payments_action_timeout_s: float = Field(
        default=86_400,
        ge=60,
        le=30 * 86_400,
        description="How long a top-up waits for its payer to complete a 3-D Secure challenge:"
        " past it, the first reconciliation whose provider status still says the challenge"
        " is unanswered voids the pending amount and fails the top-up"
        " (authentication_abandoned), instead of asking the provider about it for ever.",
    )

    risk_counters: Literal["auto", "memory", "database", "redis"] = Field(
        default="auto",
        description="Where the risk engine's velocity counters live: auto (redis when"
        " redis_url is set, else database), memory (per process), database or redis.",
    )
    risk_counters_memory_keys_max: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Keys the in-process risk counters keep (least recently used out).",
    )
    risk_counters_redis_prefix: str = Field(
        default="billfold:risk",
        pattern=r"^[A-Za-z0-9_:.-]{1,64}$",
        description="Prefix of the risk counters' Redis keys.",
    )
    risk_ip_countries: str | None = Field(
        default=None,
        max_length=4096,
        description="Path of a CSV of `cidr,country` rows: the country of a movement's IP"
        " address when the caller gives none.",
    )
    risk_user_facts_ttl_s: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="How long a user's slow-changing risk facts (sign-up time, residence,"
        " KYC tier) are cached per process.",
    )

    gc_gen0_threshold: int = Field(
        default=50_000,
        ge=100,
        le=1_000_000,
        description="Allocations between two young-generation garbage collections in"
        " `billfold serve` and `billfold worker` (which also freeze their startup heap out of"
        " the collector's sight); Python's 700 made a busy API spend ~15% of its CPU"
        " collecting, and a loaded worker 40%.",
    )

    keystore: Literal["local", "pkcs11"] = Field(
        default="local",
        description="Where the root key lives: local (master key or keystore file) or pkcs11.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 of 32 random bytes: the local root key, never written to disk.",
    )
    keystore_path: str | None = Field(
        default=None,
        description="The local keystore file; default: the SQLite database's path + .keystore.",
    )
    keystore_passphrase: SecretStr | None = Field(
        default=None,
        description="Wraps the local keystore file's root key (Argon2id + AES-256-GCM).",
    )
    keystore_allow_unprotected: bool = Field(
        default=False,
        description="Development only, SQLite only: keep the keystore file's root key"
        " unwrapped (protected by file permissions alone) when no passphrase is set.",
    )
    pkcs11_module_path: str = Field(
        default="/usr/lib/softhsm/libsofthsm2.so", description="The PKCS#11 library."
    )
    pkcs11_token_label: str = Field(default="billfold", min_length=1, max_length=32)
    pkcs11_key_label: str = Field(default="billfold-root", min_length=1, max_length=64)
    pkcs11_pin: SecretStr | None = Field(default=None, description="The token's user PIN.")
    keys_cache_entries_max: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Unwrapped keys kept in memory per kind (least recently used out).",
    )
    keys_cache_ttl_s: float = Field(
        default=30,
        gt=0,
        le=86_400,
        description="How long an unwrapped key is cached: a rotation, retirement or"
        " crypto-shredding done by another process is seen here after at most this long.",
    )
    keys_rewrap_batch_size: int = Field(default=500, ge=1, le=10_000)

    risk_enabled: bool = Field(
        default=True,
        description="Decide every money movement with the risk engine before the ledger;"
        " false: no decision is made or stored (every movement is allowed).",
    )
    risk_model_review_score: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="An enforcing risk model scoring at least this holds the movement for review.",
    )
    risk_model_block_score: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="An enforcing risk model scoring at least this blocks the movement.",
    )
    risk_models_labels_min: int = Field(
        default=200,
        ge=1,
        le=10_000_000,
        description="Labels the active supervised model must have learned from before its"
        " score enforces; below, the active anomaly detector's does.",
    )
    risk_models_refresh_interval_s: float = Field(
        default=10,
        gt=0,
        le=3600,
        description="How often a process checks for promoted or new model versions.",
    )
    risk_models_train_interval_s: float = Field(
        default=3600,
        ge=0,
        le=7 * 86_400,
        description="How often the scheduled worker trains every tenant's models; 0: never.",
    )
    risk_models_train_samples_max: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Most labels (or decisions) one training run learns from.",
    )
    risk_models_train_batch_size: int = Field(default=1000, ge=1, le=100_000)
    risk_models_signing_key: SecretStr | None = Field(
        default=None,
        description="Signs stored model states (HMAC-SHA256); default: derived from the"
        " master key when it is set, else states carry a plain SHA-256 checksum.",
    )
    risk_models_drift_window: int = Field(
        default=500,
        ge=50,
        le=1_000_000,
        description="Scores per drift check of one model (compared with its reference).",
    )
    risk_models_drift_psi_max: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="Population stability index above which a model's scores have drifted.",
    )
    risk_models_drift_cooldown_s: float = Field(
        default=3600,
        ge=0,
        le=30 * 86_400,
        description="Least time between two drift alerts of one model.",
    )
    risk_models_drift_interval_s: float = Field(
        default=5, gt=0, le=3600, description="How often observed scores are checked for drift."
    )
    risk_models_observe_buffer_max: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Scores waiting for the drift check; the oldest are dropped beyond it.",
    )
    risk_review_hold_s: int = Field(
        default=3 * 86_400,
        ge=60,
        le=90 * 86_400,
        description="How long a movement held for risk review stays held: an undecided case"
        " is then expired and its hold voided by the payments recovery loop.",
    )
    risk_ip_country_header: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9-]+$",
        description="A header a trusted proxy sets to the client's ISO 3166-1 alpha-2 country"
        " (e.g. CF-IPCountry), given to the risk engine; unset: the header is ignored.",
    )
    risk_trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Peer addresses of reverse proxies: for a request from one of them the"
        " client IP given to the risk engine is the first X-Forwarded-For hop; empty: the"
        " peer address, always.",
    )
    risk_ruleset_check_interval_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How often the risk engine reads a tenant's ruleset version (0: on every"
        " decision); a rule change made by another process applies within this long.",
    )

    @model_validator(mode="after")
    def _master_key_is_32_bytes(self) -> Settings:
        if self.master_key is not None:
            import base64
            import binascii

            text = self.master_key.get_secret_value().strip().replace("-", "+").replace("_", "/")
            try:
                raw = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("master_key must be base64 of 32 random bytes") from None
            if len(raw) != 32:
                raise ValueError("master_key must be base64 of exactly 32 bytes")
        return self

    @model_validator(mode="after")
    def _risk_thresholds_in_order(self) -> Settings:
        if self.risk_model_review_score > self.risk_model_block_score:
            raise ValueError("risk_model_review_score must be <= risk_model_block_score")
        return self

    @model_validator(mode="after")
    def _redis_counters_need_redis(self) -> Settings:
        if self.risk_counters == "redis" and self.redis_url is None:
            raise ValueError("risk_counters=redis needs redis_url")
        return self

    @model_validator(mode="after")
    def _batch_bodies_at_least_others(self) -> Settings:
        if self.request_body_batch_max_bytes < self.request_body_max_bytes:
            raise ValueError("request_body_batch_max_bytes must be >= request_body_max_bytes")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
