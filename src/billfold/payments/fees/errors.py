"""Fee errors, each with a stable code::

NotFound             404
└── FeeScheduleNotFound       fee_schedule_not_found
Conflict             409
├── FeeScheduleExists         fee_schedule_exists
└── FeeScheduleVersionMismatch fee_schedule_version_mismatch
ValidationFailed     422
├── InvalidFeeSchedule        invalid_fee_schedule   (engine)
└── InvalidFeeContext         invalid_fee_context    (engine)
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound
from billfold.payments.fees.engine import InvalidFeeContext, InvalidFeeSchedule

__all__ = [
    "FeeScheduleExists",
    "FeeScheduleNotFound",
    "FeeScheduleVersionMismatch",
    "InvalidFeeContext",
    "InvalidFeeSchedule",
]


class FeeScheduleNotFound(NotFound):
    code = "fee_schedule_not_found"
    title = "Fee schedule not found"


class FeeScheduleExists(Conflict):
    code = "fee_schedule_exists"
    title = "A fee schedule exists for this tenant or merchant"


class FeeScheduleVersionMismatch(Conflict):
    code = "fee_schedule_version_mismatch"
    title = "The fee schedule has changed"
