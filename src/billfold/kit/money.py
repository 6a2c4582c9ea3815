"""Assets and exact amounts of money.

An amount is an ``int`` in the asset's minor unit (cents for USD, wei for ETH), never a float:
floats cannot hold 0.10 exactly and lose digits past 2**53. The asset rides with every amount
so 100 JPY and 100 USD cents cannot be confused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Self

from iso4217 import Currency

from billfold.kit.errors import Conflict, ValidationFailed, invariant

__all__ = [
    "ALLOCATION_PARTS_MAX",
    "AMOUNT_MAX",
    "AMOUNT_TEXT_LENGTH_MAX",
    "ASSETS_MAX",
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
]

# The ledger stores amounts as unsigned 128-bit integers (as TigerBeetle does); keeping every
# amount, including intermediate sums, within the signed range means both fit.
AMOUNT_MAX: Final = 2**127 - 1
# 10**18 minor units per unit is what Ether uses; nothing real needs more.
EXPONENT_MAX: Final = 18
# AMOUNT_MAX has 39 digits; with a sign, a point and a leading zero anything valid is shorter.
AMOUNT_TEXT_LENGTH_MAX: Final = 64
ASSETS_MAX: Final = 4096
ALLOCATION_PARTS_MAX: Final = 10_000

_ASSET_CODE = re.compile(r"[A-Z0-9]{2,12}", re.ASCII)


def is_asset_code(text: str) -> bool:
    """Whether `text` has the form of an asset code (2-12 of A-Z and 0-9)."""
    return _ASSET_CODE.fullmatch(text) is not None


# JSON's number grammar without the exponent: one canonical spelling per value, no "+",
# no leading zeros, no ".5" or "5.", ASCII digits only.
_AMOUNT_TEXT = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?", re.ASCII)


class UnknownAsset(ValidationFailed):
    code = "unknown_asset"
    title = "Unknown asset"


class InvalidAsset(ValidationFailed):
    code = "invalid_asset"
    title = "Invalid asset"


class AssetConflict(Conflict):
    code = "asset_conflict"
    title = "Asset already registered"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"
    title = "Invalid amount"


class AmountOverflow(InvalidAmount):
    """An amount, given or computed, is beyond ``AMOUNT_MAX`` in size."""

    code = "amount_overflow"
    title = "Amount out of range"


class AssetMismatch(ValidationFailed):
    code = "asset_mismatch"
    title = "Assets do not match"


class AssetKind(StrEnum):
    FIAT = "fiat"
    CUSTOM = "custom"


@dataclass(frozen=True, slots=True)
class Asset:
    """Something an amount can be counted in: an ISO 4217 currency or a custom asset."""

    code: str
    exponent: int
    name: str
    kind: AssetKind
    numeric: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _ASSET_CODE.fullmatch(self.code):
            raise InvalidAsset("An asset code is 2 to 12 characters of A-Z and 0-9.")
        if type(self.exponent) is not int or not 0 <= self.exponent <= EXPONENT_MAX:
            raise InvalidAsset(f"An asset exponent is an integer from 0 to {EXPONENT_MAX}.")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidAsset("An asset needs a name.")
        if not isinstance(self.kind, AssetKind):
            raise InvalidAsset("An asset kind is 'fiat' or 'custom'.")
        if self.numeric is not None and (
            type(self.numeric) is not int or not 0 <= self.numeric <= 999
        ):
            raise InvalidAsset("An ISO 4217 numeric code is an integer from 0 to 999.")


def iso4217_assets() -> tuple[Asset, ...]:
    """Every currency in the ISO 4217 table, as typed assets.

    Entries without a minor unit (gold, SDR, the testing code XTS) have no exponent in the
    table; they are counted in whole units, so their exponent is 0.
    """
    return _ISO4217_ASSETS


def _load_iso4217() -> tuple[Asset, ...]:
    # The iso4217 package is untyped; this is the one place its values are read.
    assets: list[Asset] = []
    for currency in Currency:
        exponent: object = currency.exponent
        numeric: object = currency.number
        assets.append(
            Asset(
                code=str(currency.code),
                exponent=exponent if isinstance(exponent, int) else 0,
                name=str(currency.currency_name),
                kind=AssetKind.FIAT,
                numeric=numeric if isinstance(numeric, int) else None,
            )
        )
    return tuple(assets)


_ISO4217_ASSETS: Final = _load_iso4217()


class AssetRegistry:
    """The assets amounts may be counted in: ISO 4217 plus registered custom assets."""

    def __init__(self) -> None:
        self._assets: dict[str, Asset] = {asset.code: asset for asset in _ISO4217_ASSETS}

    def register(self, asset: Asset) -> None:
        """Add a custom asset; registering the identical asset again changes nothing."""
        existing = self._assets.get(asset.code)
        if existing == asset:
            return
        if existing is not None:
            # Another exponent under the same code would rescale every stored amount.
            raise AssetConflict(
                f"Asset {asset.code} is already registered differently.", asset=asset.code
            )
        if asset.kind is not AssetKind.CUSTOM:
            raise InvalidAsset("Only custom assets can be registered; fiat comes from ISO 4217.")
        if len(self._assets) >= ASSETS_MAX:
            raise InvalidAsset(f"The registry holds at most {ASSETS_MAX} assets.")
        self._assets[asset.code] = asset

    def get(self, code: str) -> Asset:
        """The asset with this exact (upper-case) code, or :class:`UnknownAsset`."""
        asset = self._assets.get(code)
        if asset is not None:
            return asset
        if isinstance(code, str) and _ASSET_CODE.fullmatch(code):
            raise UnknownAsset(f"Unknown asset {code}.", asset=code)
        # Not echoed: the text may be anything a client sent, of any length.
        raise UnknownAsset("Unknown asset code.")

    def as_mapping(self) -> MappingProxyType[str, Asset]:
        """A read-only live view, code to asset."""
        return MappingProxyType(self._assets)

    def __contains__(self, code: object) -> bool:
        return code in self._assets

    def __iter__(self) -> Iterator[Asset]:
        return iter(tuple(self._assets.values()))

    def __len__(self) -> int:
        return len(self._assets)


def default_registry() -> AssetRegistry:
    """A new registry with ISO 4217 and the example custom assets USDC and ETH.

    New on every call, so a test or tenant that registers an asset changes no one else's.
    """
    registry = AssetRegistry()
    registry.register(Asset(code="USDC", exponent=6, name="USD Coin", kind=AssetKind.CUSTOM))
    registry.register(Asset(code="ETH", exponent=18, name="Ether", kind=AssetKind.CUSTOM))
    return registry


def _check_range(amount: int) -> int:
    if not -AMOUNT_MAX <= amount <= AMOUNT_MAX:
        raise AmountOverflow(f"Amounts are limited to {AMOUNT_MAX} minor units in size.")
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in minor units of an asset."""

    amount: int
    asset: Asset

    def __post_init__(self) -> None:
        # bool is an int subclass and float an easy mistake; both would corrupt sums.
        invariant(type(self.amount) is int, f"Money amount must be int, got {self.amount!r}")
        invariant(isinstance(self.asset, Asset), "Money asset must be an Asset")
        _check_range(self.amount)

    @classmethod
    def zero(cls, asset: Asset) -> Self:
        return cls(amount=0, asset=asset)

    @classmethod
    def parse(cls, text: str, asset: Asset) -> Self:
        """Read a decimal string such as ``"12.34"`` exactly into minor units.

        Only ``-?digits(.digits)?`` is accepted, with at most ``asset.exponent`` fractional
        digits; anything else raises :class:`InvalidAmount` (or :class:`AmountOverflow`).
        """
        if not isinstance(text, str) or len(text) > AMOUNT_TEXT_LENGTH_MAX:
            raise InvalidAmount("An amount is a decimal string such as '12.34'.")
        match = _AMOUNT_TEXT.fullmatch(text)
        if match is None:
            raise InvalidAmount("An amount is a decimal string such as '12.34'.")
        sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > asset.exponent:
            # Rounding here would create or destroy money; the caller must say what it means.
            raise InvalidAmount(
                f"{asset.code} amounts have at most {asset.exponent} decimal places.",
                decimal_places_max=asset.exponent,
            )
        magnitude = int(whole + fraction.ljust(asset.exponent, "0"))
        amount = -magnitude if sign else magnitude
        return cls(amount=_check_range(amount), asset=asset)

    def format(self) -> str:
        """The exact decimal string with ``asset.exponent`` decimal places: ``"12.30"``."""
        exponent = self.asset.exponent
        sign = "-" if self.amount < 0 else ""
        digits = str(abs(self.amount)).rjust(exponent + 1, "0")
        if exponent == 0:
            return f"{sign}{digits}"
        return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"

    def __str__(self) -> str:
        return self.format()

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_asset(other)
        return Money(amount=_check_range(self.amount + other.amount), asset=self.asset)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._check_same_asset(other)
        return Money(amount=_check_range(self.amount - other.amount), asset=self.asset)

    def _check_same_asset(self, other: Money) -> None:
        if self.asset != other.asset:
            raise AssetMismatch(
                f"Cannot combine {self.asset.code} with {other.asset.code}.",
                assets=[self.asset.code, other.asset.code],
            )


def allocate(amount: int, ratios: Sequence[int]) -> list[int]:
    """Split ``amount`` by integer ``ratios`` into parts that sum to exactly ``amount``.

    Largest-remainder method: each part is its proportional share rounded toward zero,
    and the units left over go one each to the parts with the largest remainders, earlier
    parts first on a tie. A part with ratio 0 gets 0, and ``allocate(-a, r)`` is
    ``-allocate(a, r)`` part by part, so a refund splits like its payment.
    """
    invariant(type(amount) is int, f"allocate amount must be int, got {amount!r}")
    _check_range(amount)
    if not 1 <= len(ratios) <= ALLOCATION_PARTS_MAX:
        raise ValidationFailed(f"An allocation has 1 to {ALLOCATION_PARTS_MAX} ratios.")
    if any(type(ratio) is not int or ratio < 0 for ratio in ratios):
        raise ValidationFailed("Allocation ratios are non-negative integers.")
    total = sum(ratios)
    if total == 0:
        raise ValidationFailed("At least one allocation ratio must be positive.")
    magnitude = abs(amount)
    parts = [magnitude * ratio // total for ratio in ratios]
    remainders = [magnitude * ratio % total for ratio in ratios]
    leftover = magnitude - sum(parts)
    # leftover < len(ratios) because each part lost less than one unit to rounding down.
    by_remainder = sorted(range(len(ratios)), key=lambda index: (-remainders[index], index))
    for index in by_remainder[:leftover]:
        parts[index] += 1
    invariant(sum(parts) == magnitude, "allocation parts must sum to the amount")
    return [-part for part in parts] if amount < 0 else parts
