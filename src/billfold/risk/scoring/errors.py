"""The models domain's expected failures, rendered as problem+json.

BillfoldError
├── NotFound
│   └── ModelNotFound            404 risk_model_not_found
└── Conflict
    ├── ModelTrainingConflict    409 risk_model_training_conflict
    ├── ModelPromotionConflict   409 risk_model_promotion_conflict
    └── ModelPromotionPending    409 risk_model_promotion_pending
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound

__all__ = [
    "ModelNotFound",
    "ModelPromotionConflict",
    "ModelPromotionPending",
    "ModelTrainingConflict",
]


class ModelNotFound(NotFound):
    code = "risk_model_not_found"
    title = "Risk model not found"


class ModelTrainingConflict(Conflict):
    code = "risk_model_training_conflict"
    title = "Another training of this model finished first"


class ModelPromotionConflict(Conflict):
    code = "risk_model_promotion_conflict"
    title = "Another version of this kind was promoted at the same time"


class ModelPromotionPending(Conflict):
    code = "risk_model_promotion_pending"
    title = "A promotion of this model version already waits for approval"
