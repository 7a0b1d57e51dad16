"""Package attributes loaded on first use (PEP 562).

A package whose ``__init__`` re-exports something heavy (torch, pydantic models) makes every
import of a light sibling pay for it — ``tailguard load`` and the CLI's start-up among them.
Such a package names where each heavy attribute lives and loads it when first asked for::

    if TYPE_CHECKING:  # for type checkers and readers
        from tailguard.train.engine import Engine
    __getattr__ = lazy_getattr(__name__, {"Engine": ".engine"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: attribute ``name`` is imported from module
    ``homes[name]`` (relative to ``package`` when it starts with a dot) on first use, then
    kept in the package so later lookups are plain ones."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
