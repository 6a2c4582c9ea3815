"""The PII vault, consent records and card/bank-account tokens (API key).

Scopes: `users:admin` reads masked PII, searches and lists consents; `pii:write` stores PII,
records and withdraws consent, tokenizes; `pii:read` sees PII unmasked and exports it;
erasure needs `pii:write` and `pii:read`; detokenizing needs `pii:detokenize`. A missing
scope is a `PermissionDeniedError` `insufficient_scope`.
"""

from __future__ import annotations

from typing import cast

from billfold.client.resources._base import Resource, path_id, without_none
from billfold.client.types import (
    Consent,
    ConsentList,
    Detokenized,
    Erasure,
    Pii,
    PiiExport,
    PiiFieldName,
    PiiSearch,
    Token,
    TokenKind,
)

__all__ = ["Consents", "PiiVault", "TokenVault"]


class PiiVault(Resource):
    def put(
        self,
        user_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        national_id: str | None = None,
        address: str | None = None,
        bank_account: str | None = None,
        idempotency_key: str | None = None,
    ) -> Pii:
        """Store or replace the fields given (at least one); the others stay. The answer
        is masked. PUT: safe to repeat."""
        body = without_none(
            {
                "name": name,
                "email": email,
                "phone": phone,
                "national_id": national_id,
                "address": address,
                "bank_account": bank_account,
            }
        )
        if not body:
            raise ValueError("give at least one field")
        path = f"/v1/users/{path_id(user_id)}/pii"
        answer = self._transport.request("PUT", path, json=body, idempotency_key=idempotency_key)
        return cast(Pii, answer)

    def get(self, user_id: str) -> Pii:
        """The user's PII: in full (`masked` false) for a key holding `pii:read`, else
        masked."""
        return cast(Pii, self._transport.request("GET", f"/v1/users/{path_id(user_id)}/pii"))

    def search(self, *, field: PiiFieldName, value: str) -> PiiSearch:
        """Users whose `field` equals `value` once normalized (blind indexes; not
        `address`)."""
        body = {"field": field, "value": value}
        return cast(PiiSearch, self._transport.request("POST", "/v1/pii/search", json=body))

    def export(self, user_id: str) -> PiiExport:
        """Everything held about the user, unmasked (GDPR art. 15 and 20; audited)."""
        return cast(
            PiiExport, self._transport.request("GET", f"/v1/users/{path_id(user_id)}/export")
        )

    def erase(self, user_id: str, *, idempotency_key: str | None = None) -> Erasure:
        """Crypto-shred the user's data: their data keys are destroyed (audited)."""
        answer = self._transport.request(
            "POST", f"/v1/users/{path_id(user_id)}/erasure", idempotency_key=idempotency_key
        )
        return cast(Erasure, answer)


class Consents(Resource):
    def grant(
        self,
        user_id: str,
        *,
        purpose: str,
        version: str,
        idempotency_key: str | None = None,
    ) -> Consent:
        """Record the user's consent to `purpose` at `version` of its terms."""
        body = {"purpose": purpose, "version": version}
        answer = self._transport.request(
            "POST",
            f"/v1/users/{path_id(user_id)}/consents",
            json=body,
            idempotency_key=idempotency_key,
        )
        return cast(Consent, answer)

    def list(self, user_id: str) -> ConsentList:
        """Every consent record of the user, withdrawn ones included, oldest first."""
        return cast(
            ConsentList, self._transport.request("GET", f"/v1/users/{path_id(user_id)}/consents")
        )

    def withdraw(self, user_id: str, purpose: str) -> ConsentList:
        """Withdraw the user's consent to `purpose`; the answer lists all their records."""
        path = f"/v1/users/{path_id(user_id)}/consents/{path_id(purpose)}/withdraw"
        return cast(ConsentList, self._transport.request("POST", path))


class TokenVault(Resource):
    def tokenize(self, *, kind: TokenKind, value: str, idempotency_key: str | None = None) -> Token:
        """A token for a card (`pan`) or bank account number: the same value always gets
        the same token."""
        body = {"kind": kind, "value": value}
        answer = self._transport.request(
            "POST", "/v1/tokens", json=body, idempotency_key=idempotency_key
        )
        return cast(Token, answer)

    def detokenize(self, *, kind: TokenKind, token: str) -> Detokenized:
        """The number behind a token (`pii:detokenize`; every use audited)."""
        body = {"kind": kind, "token": token}
        answer = self._transport.request("POST", "/v1/tokens/detokenize", json=body)
        return cast(Detokenized, answer)
