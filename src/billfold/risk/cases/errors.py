"""The review queue's and the automated responses' errors.

BillfoldError
├── NotFound
│   ├── CaseNotFound                404 case_not_found
│   ├── ResponseNotFound            404 response_not_found
│   └── RiskSubjectNotFound         404 risk_subject_not_found
├── Conflict
│   ├── CaseNotOpen                 409 case_not_open
│   ├── CaseHoldExpired             409 case_hold_expired
│   ├── ResponseNotActive           409 response_not_active
│   └── CaseNoteLimitReached        409 case_note_limit_reached
├── ValidationFailed
│   └── InvalidCaseNote             422 invalid_case_note
└── ServiceUnavailable
    └── HeldResolverUnavailable     503 held_resolver_unavailable

Another tenant's case or response is as absent as a missing one (404).
"""

from __future__ import annotations

from billfold.kit.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed

__all__ = [
    "CaseHoldExpired",
    "CaseNotFound",
    "CaseNotOpen",
    "CaseNoteLimitReached",
    "HeldResolverUnavailable",
    "InvalidCaseNote",
    "ResponseNotActive",
    "ResponseNotFound",
    "RiskSubjectNotFound",
]


class CaseNotFound(NotFound):
    code = "case_not_found"
    title = "Review case not found"


class ResponseNotFound(NotFound):
    code = "response_not_found"
    title = "Risk response not found"


class RiskSubjectNotFound(NotFound):
    code = "risk_subject_not_found"
    title = "No such end user"


class CaseNotOpen(Conflict):
    code = "case_not_open"
    title = "The case is already decided"


class CaseHoldExpired(Conflict):
    code = "case_hold_expired"
    title = "The case's hold has lapsed: it can no longer be approved"


class ResponseNotActive(Conflict):
    code = "response_not_active"
    title = "The response is not active"


class CaseNoteLimitReached(Conflict):
    code = "case_note_limit_reached"
    title = "The case has as many notes as it may"


class InvalidCaseNote(ValidationFailed):
    code = "invalid_case_note"
    title = "Invalid note"


class HeldResolverUnavailable(ServiceUnavailable):
    code = "held_resolver_unavailable"
    title = "No resolver for held movements is installed"
