"""Billfold: a self-hostable digital wallet and payments platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("billfold")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["__version__"]
