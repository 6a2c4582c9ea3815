"""Risk features' errors.

BillfoldError
└── NotFound
    └── RiskUserNotFound        404 user_not_found
"""

from __future__ import annotations

from billfold.kit.errors import NotFound

__all__ = ["RiskUserNotFound"]


class RiskUserNotFound(NotFound):
    code = "user_not_found"
    title = "User not found"
