"""Tokens, field validation and search as the README states them, on both backends: a
detokenization is an audited use each time (an Idempotency-Key neither keeps nor replays
the number), identifiers are compared without their separators, tokens and searches stay
in their mode; and the token format and normalizers as properties."""

from __future__ import annotations

import secrets
import uuid

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from billfold.identity.types import Mode, Scope
from billfold.privacy.fields import PiiField, normalize, validate
from billfold.privacy.masking import luhn_valid
from billfold.privacy.tokenization import (
    BANK_ACCOUNT_TOKEN_LENGTH_MIN,
    make_bank_account_token,
    make_pan_token,
)
from identity.identity_support import create_key, run_in_unit_of_work
from privacy.privacy_support import PII_SCOPES, auth, new_privacy_tenant, privacy_client, sign_up
from privacy.test_privacy_api import _events

LONG_IBAN = "LC55 HEMM 0001 0001 0012 0012 0002 3015"
"""Saint Lucia's IBAN has 32 characters, 39 as printed in groups of four."""


def _with_check_digit(digits: str) -> str:
    """`digits` and the one digit that makes them pass the Luhn check."""
    return next(digits + d for d in "0123456789" if luhn_valid(digits + d))


def _idempotency_bodies(database_url: str) -> bytes:
    async def read(session: object) -> bytes:
        rows = await session.execute(text("SELECT response_body FROM idempotency_keys"))  # type: ignore[attr-defined]
        return b"".join(bytes(row[0] or b"") for row in rows)

    return run_in_unit_of_work(database_url, read)  # type: ignore[arg-type]


def test_a_detokenization_with_an_idempotency_key_is_neither_kept_nor_replayed(
    database_url: str,
) -> None:
    """Each answer that shows the number is one `pii.detokenized` event, and the number is
    never written in the clear: a retry with the key gets 409 withheld, not the number."""
    tenant = new_privacy_tenant(database_url)
    pan = _with_check_digit("4" + "".join(secrets.choice("0123456789") for _ in range(14)))
    with privacy_client(database_url) as client:
        created = client.post(
            "/v1/tokens", json={"kind": "pan", "value": pan}, headers=auth(tenant.writer)
        )
        body = {"kind": "pan", "token": created.json()["token"]}
        keyed = {**auth(tenant.detokenizer), "Idempotency-Key": uuid.uuid4().hex}
        first = client.post("/v1/tokens/detokenize", json=body, headers=keyed)
        assert first.status_code == 200, first.text
        assert first.json()["value"] == pan
        assert first.headers["cache-control"] == "no-store"
        retry = client.post("/v1/tokens/detokenize", json=body, headers=keyed)
        assert retry.status_code == 409, retry.text
        assert retry.headers["content-type"] == "application/problem+json"
        assert retry.json()["code"] == "idempotency_response_withheld"
        assert pan not in retry.text
        plain = client.post("/v1/tokens/detokenize", json=body, headers=auth(tenant.detokenizer))
        assert plain.json()["value"] == pan
    assert _events(database_url, tenant.tenant_id).count("pii.detokenized") == 2
    assert pan.encode() not in _idempotency_bodies(database_url)


def test_identifiers_count_their_letters_and_digits_not_their_separators(
    database_url: str,
) -> None:
    """An IBAN of 32 as printed (39 characters) is stored and found, as it is tokenized;
    more than 34 letters and digits is still a clear 422."""
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        body = {"bank_account": LONG_IBAN, "national_id": "1234 5678 9012 3456 7890 1234 5678 90"}
        stored = client.put(f"/v1/users/{user}/pii", json=body, headers=auth(tenant.writer))
        assert stored.status_code == 200, stored.text
        found = client.post(
            "/v1/pii/search",
            json={"field": "bank_account", "value": LONG_IBAN.replace(" ", "").lower()},
            headers=auth(tenant.writer),
        )
        assert found.json()["user_ids"] == [user]
        too_long = client.put(
            f"/v1/users/{user}/pii", json={"bank_account": "A" * 35}, headers=auth(tenant.writer)
        )
        assert too_long.status_code == 422
        assert too_long.headers["content-type"] == "application/problem+json"
        token = client.post(
            "/v1/tokens",
            json={"kind": "bank_account", "value": LONG_IBAN},
            headers=auth(tenant.writer),
        )
        assert token.status_code == 200, token.text


def test_line_breaks_outside_an_address_and_invisible_characters_in_an_email_are_refused(
    database_url: str,
) -> None:
    tenant = new_privacy_tenant(database_url)
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        for body in (
            {"name": "Zhang\nWei"},
            {"national_id": "1234\n5678"},
            {"bank_account": "DE89\n3704 0044 0532 0130 00"},
            {"email": "ann\u200b@example.com"},
            {"email": "ann\u202e@example.com"},
        ):
            refused = client.put(f"/v1/users/{user}/pii", json=body, headers=auth(tenant.writer))
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["code"] == "invalid_pii_value"
        address = {"address": "1 Jianguo Road\nBeijing"}
        stored = client.put(f"/v1/users/{user}/pii", json=address, headers=auth(tenant.writer))
        assert stored.status_code == 200, stored.text
        full = client.get(f"/v1/users/{user}/pii", headers=auth(tenant.reader))
        assert full.json()["fields"] == address


def test_tokens_and_searches_stay_in_their_mode(database_url: str) -> None:
    tenant = new_privacy_tenant(database_url)
    live = create_key(
        database_url,
        tenant_id=tenant.tenant_id,
        scopes=[*PII_SCOPES, Scope.PII_DETOKENIZE],
        mode=Mode.LIVE,
    ).secret
    with privacy_client(database_url) as client:
        user = sign_up(client, tenant.writer)
        client.put(
            f"/v1/users/{user}/pii", json={"email": "ann@example.com"}, headers=auth(tenant.writer)
        )
        search = {"field": "email", "value": "ANN@example.com"}
        assert client.post("/v1/pii/search", json=search, headers=auth(tenant.writer)).json() == {
            "user_ids": [user]
        }
        assert client.post("/v1/pii/search", json=search, headers=auth(live)).json() == {
            "user_ids": []
        }
        value = {"kind": "pan", "value": "4242424242424242"}
        test_token = client.post("/v1/tokens", json=value, headers=auth(tenant.writer)).json()
        live_token = client.post("/v1/tokens", json=value, headers=auth(live)).json()
        assert test_token["token"] != live_token["token"]
        refused = client.post(
            "/v1/tokens/detokenize",
            json={"kind": "pan", "token": test_token["token"]},
            headers=auth(live),
        )
        assert refused.status_code == 404 and refused.json()["code"] == "token_not_found"
    assert "pii.detokenized" not in _events(database_url, tenant.tenant_id)


_PANS = st.text("0123456789", min_size=11, max_size=18).map(_with_check_digit)
_ACCOUNTS = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=8, max_size=34)


@given(_PANS)
def test_a_pan_token_keeps_the_length_and_last_four_starts_with_9_and_passes_luhn(
    pan: str,
) -> None:
    token = make_pan_token(pan)
    assert len(token) == len(pan) and token.isascii() and token.isdigit()
    assert token[0] == "9" and token[-4:] == pan[-4:] and luhn_valid(token)


@given(_ACCOUNTS)
def test_a_bank_account_token_is_tk_digits_and_the_last_four(account: str) -> None:
    token = make_bank_account_token(account)
    assert len(token) == max(len(account), BANK_ACCOUNT_TOKEN_LENGTH_MIN)
    assert token[:2] == "TK" and token[2:-4].isdigit() and token[-4:] == account[-4:]


@given(_ACCOUNTS, st.sampled_from([" ", "-", "."]), st.integers(1, 6))
def test_an_identifier_written_in_groups_is_the_identifier(
    account: str, separator: str, group: int
) -> None:
    """As printed (groups, separators, lowercase), a valid identifier stays valid and is
    searched as the compact one."""
    written = separator.join(account[i : i + group] for i in range(0, len(account), group))
    for field in (PiiField.BANK_ACCOUNT, PiiField.NATIONAL_ID):
        if len(account) > 32 and field is PiiField.NATIONAL_ID:
            continue
        compact = normalize(field, validate(field, account))
        assert normalize(field, validate(field, written.lower())) == compact


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True), st.integers(1, 4))
def test_a_phone_number_written_with_spaces_and_dashes_is_the_number(
    phone: str, group: int
) -> None:
    written = phone[:3] + " " + "-".join(phone[i : i + group] for i in range(3, len(phone), group))
    assert validate(PiiField.PHONE, written) == phone
    assert normalize(PiiField.PHONE, validate(PiiField.PHONE, written)) == phone


@given(st.from_regex(r"[a-z0-9._+]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,8}", fullmatch=True))
def test_an_email_address_is_searched_whatever_its_case(email: str) -> None:
    expected = normalize(PiiField.EMAIL, validate(PiiField.EMAIL, email))
    assert normalize(PiiField.EMAIL, validate(PiiField.EMAIL, f" {email.upper()} ")) == expected
