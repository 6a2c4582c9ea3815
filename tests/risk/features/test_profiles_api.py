"""Risk profiles through the SDK against the real application, on both backends: set and
read, audited; the refusals as typed errors (another tenant's user, a bad country, a key
without `users:admin`)."""

from __future__ import annotations

import pytest

from billfold.client import NotFoundError, PermissionDeniedError, ValidationError
from billfold.identity.types import Mode, Scope
from client.sdk_support import USER_PASSWORD, running, unique_email

ADMIN = [Scope.USERS_ADMIN, Scope.AUDIT_READ]


def test_a_profile_is_set_read_and_replaced(database_url: str) -> None:
    # Live mode: the audit log is read with a live key.
    with running(database_url) as server, server.billfold(ADMIN, mode=Mode.LIVE) as billfold:
        user = billfold.users.create(email=unique_email(), password=USER_PASSWORD)
        empty = billfold.risk.get_profile(user["id"])
        assert empty == {"user_id": user["id"], "residence_country": None, "updated_at": None}
        set_ = billfold.risk.set_profile(user["id"], residence_country="FR")
        assert set_["residence_country"] == "FR" and set_["updated_at"] is not None
        assert billfold.risk.get_profile(user["id"]) == set_
        assert (
            billfold.risk.set_profile(user["id"], residence_country="DE")["residence_country"]
            == "DE"
        )
        cleared = billfold.risk.set_profile(user["id"], residence_country=None)
        assert cleared["residence_country"] is None
        actions = [entry["action"] for entry in billfold.audit.iterate_entries()]
        assert actions.count("risk.profile_set") == 3


def test_refusals(database_url: str) -> None:
    with running(database_url) as server, server.billfold(ADMIN) as billfold:
        user = billfold.users.create(email=unique_email(), password=USER_PASSWORD)
        with pytest.raises(ValidationError):
            billfold.risk.set_profile(user["id"], residence_country="fr")
        with pytest.raises(ValidationError):
            billfold.risk.set_profile(user["id"], residence_country="FRA")
        with pytest.raises(NotFoundError) as missing:
            billfold.risk.get_profile("usr_" + "0" * 32)
        assert missing.value.code == "user_not_found"
        with server.billfold([Scope.WALLETS_READ]) as reader, pytest.raises(PermissionDeniedError):
            reader.risk.get_profile(user["id"])
        # Another tenant's caller sees no such user, and the profile is unchanged.
    with running(database_url) as other, other.billfold(ADMIN) as intruder:
        with pytest.raises(NotFoundError):
            intruder.risk.set_profile(user["id"], residence_country="RU")
        with pytest.raises(NotFoundError):
            intruder.risk.get_profile(user["id"])
