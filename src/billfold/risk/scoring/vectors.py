"""Features as a model sees them: a flat mapping of name → float.

- numbers (int, float) become ``sign(x)·log1p(|x|)``: amounts in minor units and velocity
  counts are heavy-tailed, and a linear model or a min-max scaler is ruled by its largest
  values otherwise; the transform is monotone, so order is kept;
- booleans become 0.0 or 1.0;
- strings (``kind``, ``currency``, ``ip_country``, …) are one-hot: ``"currency=EUR": 1.0``;
- None, NaN and infinities are left out (a model then sees the feature as absent).

Pure and bounded: at most `FEATURES_MAX` features, string values cut at `TEXT_LENGTH_MAX`.
"""

from __future__ import annotations

import math
from typing import Final

from billfold.risk.types import Features

__all__ = ["FEATURES_MAX", "TEXT_LENGTH_MAX", "Vector", "numeric_only", "vectorize"]

FEATURES_MAX: Final = 256
TEXT_LENGTH_MAX: Final = 64
CATEGORY_SEPARATOR: Final = "="
Vector = dict[str, float]


def vectorize(features: Features) -> Vector:
    """The model's view of `features` (see the module docstring)."""
    vector: Vector = {}
    for name, value in features.items():
        if len(vector) >= FEATURES_MAX:
            break
        if value is None:
            continue
        if isinstance(value, bool):
            vector[name] = 1.0 if value else 0.0
        elif isinstance(value, int | float):
            number = float(value)
            if math.isfinite(number):
                vector[name] = math.copysign(math.log1p(abs(number)), number)
        else:
            vector[f"{name}{CATEGORY_SEPARATOR}{value[:TEXT_LENGTH_MAX]}"] = 1.0
    return vector


def numeric_only(vector: Vector) -> Vector:
    """The numeric (and boolean) features: what the anomaly detector measures distances on."""
    return {name: value for name, value in vector.items() if CATEGORY_SEPARATOR not in name}
