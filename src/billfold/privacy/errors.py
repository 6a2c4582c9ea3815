"""Privacy's typed errors, rendered as problem+json by the kit's handlers.

The hierarchy::

    BillfoldError
    ├── NotFound
    │   ├── TokenNotFound          404 token_not_found
    │   └── ConsentNotFound        404 consent_not_found
    └── ValidationFailed
        ├── InvalidPiiValue        422 invalid_pii_value
        ├── InvalidCardNumber      422 invalid_card_number
        ├── InvalidAccountNumber   422 invalid_account_number
        └── InvalidConsent         422 invalid_consent
"""

from __future__ import annotations

from billfold.kit.errors import NotFound, ValidationFailed

__all__ = [
    "ConsentNotFound",
    "InvalidAccountNumber",
    "InvalidCardNumber",
    "InvalidConsent",
    "InvalidPiiValue",
    "TokenNotFound",
]


class TokenNotFound(NotFound):
    code = "token_not_found"
    title = "No such token"


class ConsentNotFound(NotFound):
    code = "consent_not_found"
    title = "No consent in force for this purpose"


class InvalidPiiValue(ValidationFailed):
    code = "invalid_pii_value"
    title = "Invalid personal data value"


class InvalidCardNumber(ValidationFailed):
    code = "invalid_card_number"
    title = "Not a card number (12 to 19 digits passing the Luhn check)"


class InvalidAccountNumber(ValidationFailed):
    code = "invalid_account_number"
    title = "Not a bank account number (8 to 34 letters and digits)"


class InvalidConsent(ValidationFailed):
    code = "invalid_consent"
    title = "Invalid consent purpose or version"
