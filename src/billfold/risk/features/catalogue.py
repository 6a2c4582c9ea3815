"""Every feature the risk engine computes: its name, type and meaning. Rules (CEL) may use
exactly these names; the README's feature table is this catalogue.

Every feature is present on every movement, with its type: a value that does not apply
is 0, 0.0, false or "" (no device: `device_count_1h` is 0 and `has_device` false), except
`account_age_days` and `kyc_tier`, which are -1 when the movement has no end user.
Velocity features count the movements recorded *before* this one; windows are aligned to
their buckets (``billfold.risk.features.counters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FEATURES", "VELOCITY_SUBJECTS", "WINDOW_NAMES", "FeatureSpec"]

FeatureType = Literal["bool", "int", "float", "string"]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    type: FeatureType
    description: str


WINDOW_NAMES = ("1m", "1h", "24h", "30d")
VELOCITY_SUBJECTS = {
    "user": "the paying user (the receiving user of a top-up)",
    "device": "the bound device that signed the request",
    "payee": "the payee (`usr_…`, `mer_…`, `provider:…`, `fx:…`)",
    "ip": "the client IP address",
}
_WINDOW_WORDS = {"1m": "minute", "1h": "hour", "24h": "24 hours", "30d": "30 days"}


def _velocity() -> dict[str, FeatureSpec]:
    features = {}
    for subject, meaning in VELOCITY_SUBJECTS.items():
        for window in WINDOW_NAMES:
            span = _WINDOW_WORDS[window]
            features[f"{subject}_count_{window}"] = FeatureSpec(
                "int", f"Movements of {meaning} in the last {span}, any currency (0 if none)."
            )
            features[f"{subject}_amount_{window}"] = FeatureSpec(
                "int",
                f"Their amount in the movement's currency, minor units, last {span}.",
            )
    return features


FEATURES: dict[str, FeatureSpec] = {
    "kind": FeatureSpec(
        "string",
        "The movement kind: top_up, withdrawal, p2p, merchant_payment, refund, fx_conversion.",
    ),
    "amount": FeatureSpec("int", "The amount in minor units."),
    "currency": FeatureSpec("string", "The currency or asset code."),
    "amount_major": FeatureSpec(
        "float", "The amount in major units (amount / 10**exponent; exponent 0 if unknown)."
    ),
    **_velocity(),
    "user_received_amount_24h": FeatureSpec(
        "int",
        "Money that came into the user in the last 24 hours in the movement's currency"
        " (P2P received, refunds to them, top-ups): pass-through of mules.",
    ),
    "user_history_count": FeatureSpec(
        "int", "The user's past movements in this currency (all time): the z-score's base."
    ),
    "amount_zscore": FeatureSpec(
        "float",
        "(amount - mean) / standard deviation of the user's past amounts in this currency;"
        " 0.0 with fewer than 5; capped at ±100.",
    ),
    "new_device": FeatureSpec(
        "bool", "A device signed it and the user never moved money from it before."
    ),
    "new_payee": FeatureSpec("bool", "There is a payee and the user never paid them before."),
    "has_device": FeatureSpec("bool", "A bound device signed the request."),
    "has_ip": FeatureSpec("bool", "The client IP address is known."),
    "account_age_days": FeatureSpec(
        "float", "Days since the user signed up; -1 without an end user."
    ),
    "kyc_tier": FeatureSpec(
        "int", "The user's KYC tier (0 to 3; the default tier if never set); -1 without one."
    ),
    "ip_country": FeatureSpec(
        "string",
        "ISO 3166-1 alpha-2 country of the IP (given by the caller, else the configured"
        ' table); "" when unknown.',
    ),
    "residence_country": FeatureSpec(
        "string", 'The user\'s country of residence (risk profile); "" when unknown.'
    ),
    "ip_country_mismatch": FeatureSpec("bool", "Both countries are known and differ."),
    "hour_of_day": FeatureSpec("int", "0 to 23, UTC, when the movement happened."),
    "day_of_week": FeatureSpec("int", "0 (Monday) to 6 (Sunday), UTC."),
    "failed_logins_24h": FeatureSpec(
        "int", "The user's failed sign-ins (wrong password) in the last 24 hours."
    ),
    "mfa_failures_24h": FeatureSpec(
        "int", "The user's failed second factors and step-ups in the last 24 hours."
    ),
}
