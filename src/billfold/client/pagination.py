"""Follow `next_cursor` across pages, with a bound.

Every listing answers `{"items": [...], "next_cursor": "..." | null}`; the next page is the
same call with `cursor=next_cursor`. `iterate` yields the items of page after page until
the cursor is null, and raises `PaginationLimitError` rather than follow more than
`pages_max` pages (or a cursor the server already gave: that would loop forever).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from billfold.client.errors import PaginationLimitError
from billfold.client.types import Page

__all__ = ["PAGES_MAX", "PAGES_MAX_LIMIT", "iterate", "iterate_async"]

PAGES_MAX = 1000
"""Default bound: at the server's largest page size (500), half a million items."""
PAGES_MAX_LIMIT = 1_000_000
T = TypeVar("T")


def iterate(fetch: Callable[[str | None], Page[T]], *, pages_max: int = PAGES_MAX) -> Iterator[T]:
    """The items of every page `fetch(cursor)` returns, starting with `cursor=None`."""
    if not 1 <= pages_max <= PAGES_MAX_LIMIT:
        raise ValueError(f"pages_max must be between 1 and {PAGES_MAX_LIMIT}")
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(pages_max):
        page = fetch(cursor)
        yield from page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return
        if cursor in seen:
            raise PaginationLimitError(f"the server repeated the cursor {cursor!r}")
        seen.add(cursor)
    raise PaginationLimitError(f"more than {pages_max} pages; raise pages_max to go further")


async def iterate_async(
    fetch: Callable[[str | None], Awaitable[Page[T]]], *, pages_max: int = PAGES_MAX
) -> AsyncIterator[T]:
    """`iterate` for an async `fetch`: the same order, bound and checks."""
    if not 1 <= pages_max <= PAGES_MAX_LIMIT:
        raise ValueError(f"pages_max must be between 1 and {PAGES_MAX_LIMIT}")
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(pages_max):
        page = await fetch(cursor)
        for item in page["items"]:
            yield item
        cursor = page["next_cursor"]
        if cursor is None:
            return
        if cursor in seen:
            raise PaginationLimitError(f"the server repeated the cursor {cursor!r}")
        seen.add(cursor)
    raise PaginationLimitError(f"more than {pages_max} pages; raise pages_max to go further")
