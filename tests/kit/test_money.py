from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from billfold.kit import money
from billfold.kit.errors import BillfoldError, InvariantViolation, ValidationFailed
from billfold.kit.money import (
    AMOUNT_MAX,
    EXPONENT_MAX,
    AmountOverflow,
    Asset,
    AssetConflict,
    AssetKind,
    AssetMismatch,
    AssetRegistry,
    InvalidAmount,
    InvalidAsset,
    Money,
    UnknownAsset,
    allocate,
    default_registry,
    iso4217_assets,
)

REGISTRY = default_registry()
USD = REGISTRY.get("USD")
JPY = REGISTRY.get("JPY")
KWD = REGISTRY.get("KWD")
CLF = REGISTRY.get("CLF")
USDC = REGISTRY.get("USDC")
ETH = REGISTRY.get("ETH")


def custom_asset(exponent: int) -> Asset:
    return Asset(code="TEST", exponent=exponent, name="Test asset", kind=AssetKind.CUSTOM)


def test_public_api_is_pinned() -> None:
    assert set(money.__all__) == {
        "AMOUNT_MAX",
        "AMOUNT_TEXT_LENGTH_MAX",
        "ASSETS_MAX",
        "ALLOCATION_PARTS_MAX",
        "EXPONENT_MAX",
        "AmountOverflow",
        "Asset",
        "AssetConflict",
        "AssetKind",
        "AssetMismatch",
        "AssetRegistry",
        "InvalidAmount",
        "InvalidAsset",
        "Money",
        "UnknownAsset",
        "allocate",
        "default_registry",
        "is_asset_code",
        "iso4217_assets",
    }


def test_amount_max_is_the_signed_128_bit_maximum() -> None:
    assert AMOUNT_MAX == 2**127 - 1


@pytest.mark.parametrize(
    ("error_class", "status", "code"),
    [
        (UnknownAsset, 422, "unknown_asset"),
        (InvalidAmount, 422, "invalid_amount"),
        (AssetMismatch, 422, "asset_mismatch"),
        (AmountOverflow, 422, "amount_overflow"),
        (InvalidAsset, 422, "invalid_asset"),
        (AssetConflict, 409, "asset_conflict"),
    ],
)
def test_money_errors_have_stable_codes(
    error_class: type[BillfoldError], status: int, code: str
) -> None:
    assert issubclass(error_class, BillfoldError)
    assert (error_class.status, error_class.code) == (status, code)


# --- assets and the registry ---


@pytest.mark.parametrize(
    ("code", "exponent", "numeric"),
    [("JPY", 0, 392), ("USD", 2, 840), ("KWD", 3, 414), ("CLF", 4, 990)],
)
def test_iso4217_exponents(code: str, exponent: int, numeric: int) -> None:
    asset = REGISTRY.get(code)
    assert asset.exponent == exponent
    assert asset.numeric == numeric
    assert asset.kind is AssetKind.FIAT


def test_iso4217_entries_without_minor_unit_are_registered_with_exponent_zero() -> None:
    gold = REGISTRY.get("XAU")
    assert gold.exponent == 0
    assert gold.numeric == 959
    assert gold.kind is AssetKind.FIAT


def test_registry_starts_with_every_iso4217_currency() -> None:
    registry = AssetRegistry()
    codes = {asset.code for asset in iso4217_assets()}
    assert len(codes) > 150
    assert {asset.code for asset in registry} == codes
    assert len(registry) == len(codes)
    assert "USDC" not in registry


def test_default_registry_has_the_example_custom_assets() -> None:
    assert (USDC.code, USDC.exponent, USDC.name, USDC.kind) == ("USDC", 6, "USD Coin", "custom")
    assert (ETH.code, ETH.exponent, ETH.name, ETH.kind) == ("ETH", 18, "Ether", "custom")
    assert "ETH" in REGISTRY
    assert "eth" not in REGISTRY


def test_default_registry_is_new_on_every_call() -> None:
    first = default_registry()
    first.register(custom_asset(2))
    assert "TEST" in first
    assert "TEST" not in default_registry()


def test_unknown_asset_raises_unknown_asset() -> None:
    with pytest.raises(UnknownAsset) as raised:
        REGISTRY.get("ZZZ")
    assert raised.value.extensions == {"asset": "ZZZ"}


def test_unknown_asset_does_not_echo_malformed_code() -> None:
    with pytest.raises(UnknownAsset) as raised:
        REGISTRY.get("<script>" * 100)
    assert raised.value.detail == "Unknown asset code."
    assert raised.value.extensions == {}


def test_register_is_idempotent_for_the_identical_asset() -> None:
    registry = default_registry()
    registry.register(Asset(code="USDC", exponent=6, name="USD Coin", kind=AssetKind.CUSTOM))
    registry.register(USD)
    assert registry.get("USDC") == USDC


def test_register_refuses_a_different_asset_under_an_existing_code() -> None:
    registry = default_registry()
    with pytest.raises(AssetConflict):
        registry.register(Asset(code="USDC", exponent=2, name="USD Coin", kind=AssetKind.CUSTOM))
    with pytest.raises(AssetConflict):
        registry.register(Asset(code="USD", exponent=2, name="Mine", kind=AssetKind.CUSTOM))


def test_register_refuses_new_fiat() -> None:
    with pytest.raises(InvalidAsset):
        AssetRegistry().register(Asset(code="ABC", exponent=2, name="Abc", kind=AssetKind.FIAT))


@pytest.mark.parametrize("code", ["", "A", "usd", "TOOLONGCODE123", "US-D", "ÜSD", "USD\n"])
def test_asset_code_must_be_2_to_12_upper_case_letters_or_digits(code: str) -> None:
    with pytest.raises(InvalidAsset):
        Asset(code=code, exponent=2, name="x", kind=AssetKind.CUSTOM)


@pytest.mark.parametrize("exponent", [-1, 19, True])
def test_asset_exponent_is_an_integer_from_0_to_18(exponent: int) -> None:
    with pytest.raises(InvalidAsset):
        custom_asset(exponent)


def test_asset_needs_a_name() -> None:
    with pytest.raises(InvalidAsset):
        Asset(code="ABC", exponent=2, name=" ", kind=AssetKind.CUSTOM)


# --- parsing and formatting ---


@pytest.mark.parametrize(
    ("text", "asset", "amount", "formatted"),
    [
        ("12.34", USD, 1234, "12.34"),
        ("12.3", USD, 1230, "12.30"),
        ("12", USD, 1200, "12.00"),
        ("0.01", USD, 1, "0.01"),
        ("-0.5", USD, -50, "-0.50"),
        ("-0", USD, 0, "0.00"),
        ("-0.00", USD, 0, "0.00"),
        ("100", JPY, 100, "100"),
        ("0", JPY, 0, "0"),
        ("0.001", KWD, 1, "0.001"),
        ("1.5", KWD, 1500, "1.500"),
        ("0.0001", CLF, 1, "0.0001"),
        ("1.000001", USDC, 1_000_001, "1.000001"),
        ("0.000000000000000001", ETH, 1, "0.000000000000000001"),
        ("1", ETH, 10**18, "1.000000000000000000"),
    ],
)
def test_parse_and_format_exactly(text: str, asset: Asset, amount: int, formatted: str) -> None:
    parsed = Money.parse(text, asset)
    assert parsed == Money(amount=amount, asset=asset)
    assert parsed.format() == formatted
    assert str(parsed) == formatted


@pytest.mark.parametrize(
    ("text", "asset"),
    [("12.345", USD), ("1.5", JPY), ("0.0001", KWD), ("0.00001", CLF), ("1.0", JPY)],
)
def test_parse_refuses_more_decimal_places_than_the_exponent(text: str, asset: Asset) -> None:
    with pytest.raises(InvalidAmount) as raised:
        Money.parse(text, asset)
    assert raised.value.extensions == {"decimal_places_max": asset.exponent}


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        " 1",
        "1 ",
        "1\n",
        "+1",
        "--1",
        "1e3",
        "1E3",
        "1,000",
        "1_000",
        "1 000",
        ".5",
        "5.",
        "01",
        "00.5",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "0x10",
        "\u0661\u0662",  # Arabic-Indic digits: int() would accept them.
        "\uff11\uff12",  # Full-width digits, likewise.
        "1.2.3",
        "-",
        "9" * 100,
    ],
)
def test_parse_refuses_malformed_text(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, USD)


def test_parse_accepts_the_maximum_exactly() -> None:
    assert Money.parse(str(AMOUNT_MAX), JPY).amount == AMOUNT_MAX
    assert Money.parse(f"-{AMOUNT_MAX}", JPY).amount == -AMOUNT_MAX
    high, low = divmod(AMOUNT_MAX, 10**18)
    assert Money.parse(f"{high}.{low:018d}", ETH).amount == AMOUNT_MAX


def test_parse_one_beyond_the_maximum_overflows() -> None:
    with pytest.raises(AmountOverflow):
        Money.parse(str(AMOUNT_MAX + 1), JPY)
    with pytest.raises(AmountOverflow):
        Money.parse(f"-{AMOUNT_MAX + 1}", JPY)
    high, low = divmod(AMOUNT_MAX + 1, 10**18)
    with pytest.raises(AmountOverflow):
        Money.parse(f"{high}.{low:018d}", ETH)


def test_overflow_is_an_invalid_amount() -> None:
    # Callers parsing client input need catch only one error.
    assert issubclass(AmountOverflow, InvalidAmount)


@given(
    amount=st.integers(min_value=-AMOUNT_MAX, max_value=AMOUNT_MAX),
    exponent=st.integers(min_value=0, max_value=EXPONENT_MAX),
)
@example(amount=AMOUNT_MAX, exponent=EXPONENT_MAX)
@example(amount=-AMOUNT_MAX, exponent=0)
@example(amount=-1, exponent=EXPONENT_MAX)
def test_parse_of_format_round_trips(amount: int, exponent: int) -> None:
    value = Money(amount=amount, asset=custom_asset(exponent))
    text = value.format()
    assert Money.parse(text, value.asset) == value
    # The text is the exact value, checked independently of the parser.
    assert Fraction(text) == Fraction(amount, 10**exponent)
    if exponent:
        assert len(text.partition(".")[2]) == exponent
    else:
        assert "." not in text


@given(text=st.one_of(st.text(), st.text(alphabet="0123456789.-+eE _,\n")))
@example(text="1" * 40)
@example(text="٣")
def test_parse_raises_only_invalid_amount_on_any_text(text: str) -> None:
    for asset in (JPY, USD, ETH):
        try:
            parsed = Money.parse(text, asset)
        except InvalidAmount:
            continue
        assert parsed.format() == Money(amount=parsed.amount, asset=asset).format()


@given(
    whole=st.integers(min_value=0, max_value=10**20),
    fraction=st.text(alphabet="0123456789", max_size=EXPONENT_MAX),
    negative=st.booleans(),
)
def test_parse_matches_exact_rational_value(whole: int, fraction: str, negative: bool) -> None:
    text = ("-" if negative else "") + str(whole) + ("." + fraction if fraction else "")
    parsed = Money.parse(text, ETH)
    assert Fraction(parsed.amount, 10**18) == Fraction(text)


# --- construction and arithmetic ---


def test_money_refuses_amounts_beyond_the_maximum() -> None:
    assert Money(amount=AMOUNT_MAX, asset=USD).amount == AMOUNT_MAX
    assert Money(amount=-AMOUNT_MAX, asset=USD).amount == -AMOUNT_MAX
    with pytest.raises(AmountOverflow):
        Money(amount=AMOUNT_MAX + 1, asset=USD)
    with pytest.raises(AmountOverflow):
        Money(amount=-AMOUNT_MAX - 1, asset=USD)


@pytest.mark.parametrize("amount", [1.0, True, "1"])
def test_money_refuses_non_integer_amounts(amount: object) -> None:
    with pytest.raises(InvariantViolation):
        Money(amount=amount, asset=USD)  # type: ignore[arg-type]


def test_zero() -> None:
    assert Money.zero(KWD) == Money(amount=0, asset=KWD)
    assert Money.zero(KWD).format() == "0.000"


def test_add_and_subtract_in_the_same_asset() -> None:
    ten = Money.parse("10.00", USD)
    three = Money.parse("3.25", USD)
    assert ten + three == Money(amount=1325, asset=USD)
    assert three - ten == Money(amount=-675, asset=USD)


def test_add_or_subtract_across_assets_raises_asset_mismatch() -> None:
    with pytest.raises(AssetMismatch) as raised:
        _ = Money.zero(USD) + Money.zero(USDC)
    assert raised.value.extensions == {"assets": ["USD", "USDC"]}
    with pytest.raises(AssetMismatch):
        _ = Money.zero(USD) - Money.zero(JPY)


def test_add_or_subtract_with_a_non_money_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = Money.zero(USD) + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Money.zero(USD) - 1  # type: ignore[operator]


def test_arithmetic_beyond_the_maximum_overflows() -> None:
    top = Money(amount=AMOUNT_MAX, asset=ETH)
    bottom = Money(amount=-AMOUNT_MAX, asset=ETH)
    one = Money(amount=1, asset=ETH)
    assert (top - one) + one == top
    with pytest.raises(AmountOverflow):
        _ = top + one
    with pytest.raises(AmountOverflow):
        _ = bottom - one


def test_money_is_immutable_and_hashable() -> None:
    value = Money.parse("1.00", USD)
    with pytest.raises(AttributeError):
        value.amount = 5  # type: ignore[misc]
    assert len({value, Money(amount=100, asset=USD)}) == 1


# --- allocation ---


@pytest.mark.parametrize(
    ("amount", "ratios", "parts"),
    [
        (100, [1, 1, 1], [34, 33, 33]),
        (-100, [1, 1, 1], [-34, -33, -33]),
        (5, [1, 1], [3, 2]),
        (10, [70, 20, 10], [7, 2, 1]),
        (1, [1, 2], [0, 1]),
        (7, [0, 1, 0], [0, 7, 0]),
        (0, [3, 4], [0, 0]),
        (AMOUNT_MAX, [1, 1], [2**126, 2**126 - 1]),
    ],
)
def test_allocate_examples(amount: int, ratios: list[int], parts: list[int]) -> None:
    assert allocate(amount, ratios) == parts


@given(
    amount=st.integers(min_value=-AMOUNT_MAX, max_value=AMOUNT_MAX),
    ratios=st.lists(st.integers(min_value=0, max_value=10**30), min_size=1, max_size=40).filter(
        any
    ),
)
def test_allocate_sums_exactly_and_each_part_is_within_one_of_its_share(
    amount: int, ratios: list[int]
) -> None:
    parts = allocate(amount, ratios)
    assert len(parts) == len(ratios)
    assert sum(parts) == amount
    total = sum(ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        assert abs(part - Fraction(amount * ratio, total)) < 1
        if ratio == 0:
            assert part == 0
    assert allocate(-amount, ratios) == [-part for part in parts]
    assert allocate(amount, ratios) == parts


@pytest.mark.parametrize("ratios", [[], [0, 0], [1, -1], [1.5], [True]])
def test_allocate_refuses_bad_ratios(ratios: list[int]) -> None:
    with pytest.raises(ValidationFailed):
        allocate(100, ratios)


def test_allocate_refuses_too_many_parts() -> None:
    with pytest.raises(ValidationFailed):
        allocate(100, [1] * (money.ALLOCATION_PARTS_MAX + 1))


def test_allocate_refuses_amounts_beyond_the_maximum() -> None:
    with pytest.raises(AmountOverflow):
        allocate(AMOUNT_MAX + 1, [1, 1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("USD", True), ("USDC", True), ("X1", True), ("usd", False), ("U", False), ("U-SD", False)],
)
def test_asset_codes_have_one_form(text: str, expected: bool) -> None:
    assert money.is_asset_code(text) is expected
