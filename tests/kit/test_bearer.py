"""`bearer_token`: the Authorization header read as RFC 6750 section 2.1 writes it."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from billfold.kit.bearer import bearer_token

B64TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "-._~+/", min_size=1).map(
    lambda token: token + "="
)
"""RFC 6750's b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" """
SCHEMES = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"])


@given(
    scheme=SCHEMES,
    token=B64TOKEN,
    spaces=st.integers(min_value=1, max_value=5),
    before=st.sampled_from(["", " ", "\t", "  "]),
    after=st.sampled_from(["", " ", "\t", " \t "]),
)
def test_any_spacing_rfc_6750_allows_finds_the_token(
    scheme: str, token: str, spaces: int, before: str, after: str
) -> None:
    assert bearer_token([f"{before}{scheme}{' ' * spaces}{token}{after}"]) == token


@given(value=st.text(max_size=40))
def test_a_value_without_the_bearer_scheme_and_a_token_has_none(value: str) -> None:
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() == "bearer" and rest.strip(" "):
        return
    assert bearer_token([value]) is None


def test_no_header_or_several_headers_have_none() -> None:
    assert bearer_token([]) is None
    assert bearer_token(["Bearer a", "Bearer a"]) is None


def test_other_schemes_and_empty_tokens_have_none() -> None:
    for value in ["Basic abc", "Bearer", "Bearer ", "Bearer    ", "Bearerabc", "Bearer\tabc", ""]:
        assert bearer_token([value]) is None, value
