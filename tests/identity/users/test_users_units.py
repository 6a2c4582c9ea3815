"""The pure pieces: identifiers, token formats, recovery codes, the signed messages,
password parameters, and each module's public API."""

from __future__ import annotations

import importlib
import uuid

import pytest

from billfold.identity.credentials import mint_api_key, parse_api_key
from billfold.identity.passwords import DEFAULT_PASSWORD_PARAMETERS, PasswordParameters, Passwords
from billfold.identity.types import Mode
from billfold.identity.users.errors import InvalidIdentifier, WeakPassword
from billfold.identity.users.identifiers import (
    IdentifierKind,
    normalize_email,
    normalize_handle,
    normalize_phone,
    parse_login_identifier,
)
from billfold.identity.users.passwords import check_password_policy
from billfold.identity.users.recovery_codes import (
    RECOVERY_CODE_COUNT,
    hash_recovery_code,
    mint_recovery_codes,
    normalize_recovery_code,
)
from billfold.identity.users.signatures import request_message, step_up_message
from billfold.identity.users.tokens import TokenKind, mint_token, token_hash_if_well_formed

pytestmark = pytest.mark.anyio


def test_identifiers_have_one_normal_form() -> None:
    assert normalize_email(" Ann.Lee+pay@Example.COM ") == "ann.lee+pay@example.com"
    assert normalize_phone("+1 (555) 010-9999") == "+15550109999"
    full_width = "\uff21\uff2e\uff2e_1"  # full-width A, N, N: they fold to ASCII under NFKC
    assert normalize_handle(full_width) == "ann_1"
    for bad_email in ("ann", "ann@", "@example.com", "ann@example", "a b@example.com", "a@b@c.d"):
        with pytest.raises(InvalidIdentifier):
            normalize_email(bad_email)
    for bad_phone in ("5550109999", "+0555", "+1234567", "+1234567890123456"):
        with pytest.raises(InvalidIdentifier):
            normalize_phone(bad_phone)
    for bad_handle in ("an", "1ann", "ann smith", "a" * 31, "ann@x"):
        with pytest.raises(InvalidIdentifier):
            normalize_handle(bad_handle)


def test_the_shape_of_a_sign_in_identifier_names_its_kind() -> None:
    cases = {
        "Ann@Example.com": (IdentifierKind.EMAIL, "ann@example.com"),
        "+44 20 7946 0958": (IdentifierKind.PHONE, "+442079460958"),
        "Ann_1": (IdentifierKind.HANDLE, "ann_1"),
    }
    for text, (kind, value) in cases.items():
        parsed = parse_login_identifier(text)
        assert parsed is not None
        assert (parsed.kind, parsed.value) == (kind, value)
    for unusable in ("", "@", "+12", "x" * 300, "ann smith"):
        assert parse_login_identifier(unusable) is None


def test_user_tokens_and_api_keys_are_never_confused() -> None:
    api_key = mint_api_key(mode=Mode.TEST, api_key_id=uuid.uuid4())
    tokens = {kind: mint_token(kind) for kind in TokenKind}
    assert tokens[TokenKind.ACCESS].startswith("bfu_at_")
    assert tokens[TokenKind.REFRESH].startswith("bfu_rt_")
    assert tokens[TokenKind.MFA].startswith("bfu_mfa_")
    assert tokens[TokenKind.STEP_UP].startswith("bfu_su_")
    for kind, token in tokens.items():
        assert parse_api_key(token) is None
        assert token_hash_if_well_formed(api_key, kind=kind) is None
        for other_kind in TokenKind:
            recognised = token_hash_if_well_formed(token, kind=other_kind) is not None
            assert recognised == (other_kind is kind)
    assert token_hash_if_well_formed(tokens[TokenKind.ACCESS] + "A", kind=TokenKind.ACCESS) is None


def test_recovery_codes_are_random_and_read_back_however_typed() -> None:
    codes = mint_recovery_codes()
    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    code = codes[0]
    assert len(code) == 19 and code.count("-") == 3
    normalized = normalize_recovery_code(code)
    assert normalized is not None
    assert normalize_recovery_code(code.upper().replace("-", " ")) == normalized
    assert normalize_recovery_code("not-a-code") is None
    user_a, user_b = uuid.uuid4(), uuid.uuid4()
    assert hash_recovery_code(user_id=user_a, normalized=normalized) != hash_recovery_code(
        user_id=user_b, normalized=normalized
    )


def test_the_signed_messages_are_pinned() -> None:
    empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    request = request_message(
        device_id="dev_" + "0" * 32,
        method="post",
        target="/v1/me/devices/verify-signature?x=1",
        timestamp="1700000000",
        nonce="n" * 16,
        body=b"",
    )
    assert (
        request
        == (
            "billfold-device-request-v1\n"
            f"dev_{'0' * 32}\n"
            "POST\n"
            "/v1/me/devices/verify-signature?x=1\n"
            "1700000000\n"
            f"{'n' * 16}\n"
            f"{empty_sha256}"
        ).encode()
    )
    step_up = step_up_message(
        step_up_id="stp_" + "1" * 32, challenge="c", amount=12500, currency="EUR", payee="Bob"
    )
    assert step_up == f"billfold-step-up-v1\nstp_{'1' * 32}\nc\n12500\nEUR\nBob".encode()


def test_password_parameters_are_bounded_and_explicit() -> None:
    assert DEFAULT_PASSWORD_PARAMETERS.memory_cost_kib == 65536
    assert DEFAULT_PASSWORD_PARAMETERS.time_cost == 3
    for bad in (
        {"time_cost": 0, "memory_cost_kib": 1024, "parallelism": 1},
        {"time_cost": 1, "memory_cost_kib": 4, "parallelism": 1},
        {"time_cost": 1, "memory_cost_kib": 1024, "parallelism": 0},
        {"time_cost": 1, "memory_cost_kib": 4 * 1024 * 1024, "parallelism": 1},
    ):
        with pytest.raises(ValueError, match="must be"):
            PasswordParameters(**bad)
    with pytest.raises(WeakPassword):
        check_password_policy("short")
    check_password_policy("long enough phrase")


async def test_a_missing_user_costs_a_verification_and_matches_nothing() -> None:
    passwords = Passwords(PasswordParameters(time_cost=1, memory_cost_kib=1024, parallelism=1))
    stored = await passwords.hash("the password!")
    assert await passwords.verify(stored, "the password!")
    assert not await passwords.verify(stored, "the password?")
    assert not await passwords.verify(None, "the password!")
    assert not await passwords.verify("not a hash", "the password!")
    assert passwords.needs_rehash("not a hash")
    assert not passwords.needs_rehash(stored)


@pytest.mark.parametrize(
    "module",
    [
        "auth",
        "config",
        "devices",
        "errors",
        "events",
        "identifiers",
        "lockout",
        "mfa",
        "models",
        "passkeys",
        "passwords",
        "recovery_codes",
        "repository",
        "router",
        "schemas",
        "service",
        "sessions",
        "signatures",
        "step_up",
        "tokens",
        "totp",
        "types",
        "work",
    ],
)
def test_each_module_exports_exactly_what_it_defines(module: str) -> None:
    loaded = importlib.import_module(f"billfold.identity.users.{module}")
    exported = loaded.__all__
    assert sorted(exported) == sorted(set(exported))
    for name in exported:
        assert hasattr(loaded, name), f"{module}.{name}"
