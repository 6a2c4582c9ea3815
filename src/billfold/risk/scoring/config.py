"""What the models domain reads from the settings, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from billfold.keys.keystore import decode_master_key
from billfold.kit.settings import Settings
from billfold.risk.scoring.state import derive_signing_key

__all__ = ["ANOMALY_NAME", "SHADOW_MODELS_MAX", "SUPERVISED_NAME", "ScoringConfig"]

SUPERVISED_NAME: Final = "fraud_logistic"
ANOMALY_NAME: Final = "anomaly_hst"
SHADOW_MODELS_MAX: Final = 4
"""Most shadow versions scored per decision (each costs its scoring time)."""


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    labels_min: int = 200
    refresh_interval_s: float = 10.0
    train_samples_max: int = 100_000
    train_batch_size: int = 1000
    drift_window: int = 500
    drift_psi_max: float = 0.25
    drift_cooldown_s: float = 3600.0
    drift_interval_s: float = 5.0
    observe_buffer_max: int = 100_000
    signing_key: bytes | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringConfig:
        return cls(
            labels_min=settings.risk_models_labels_min,
            refresh_interval_s=settings.risk_models_refresh_interval_s,
            train_samples_max=settings.risk_models_train_samples_max,
            train_batch_size=settings.risk_models_train_batch_size,
            drift_window=settings.risk_models_drift_window,
            drift_psi_max=settings.risk_models_drift_psi_max,
            drift_cooldown_s=settings.risk_models_drift_cooldown_s,
            drift_interval_s=settings.risk_models_drift_interval_s,
            observe_buffer_max=settings.risk_models_observe_buffer_max,
            signing_key=_signing_key(settings),
        )


def _signing_key(settings: Settings) -> bytes | None:
    """The explicit key (any text of 32+ bytes, used through a derivation), else one
    derived from the master key, else None (plain checksums)."""
    if settings.risk_models_signing_key is not None:
        return derive_signing_key(settings.risk_models_signing_key.get_secret_value().encode())
    if settings.master_key is not None:
        return derive_signing_key(decode_master_key(settings.master_key.get_secret_value()))
    return None
