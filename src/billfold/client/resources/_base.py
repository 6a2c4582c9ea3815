"""What every resource shares: the transport, and dropping unset optional fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from billfold.client._transport import Transport

__all__ = ["Resource", "path_id", "without_none"]


class Resource:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport


def without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def path_id(value: str) -> str:
    """An id as one path segment: an id with `/` or `?` in it cannot reach another route."""
    return quote(value, safe="")
