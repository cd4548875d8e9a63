"""Adapters by name, imported lazily: a cache hit never loads docker or modal.

``env_class(name)`` is known without importing the adapter (it enters the memo key).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from theoryx.errors import UsageError

if TYPE_CHECKING:
    from theoryx.adapters.base import Adapter

NAMES = ("local", "mock", "modal")
_MODULES = {"mock": "mock", "local": "local.adapter", "modal": "modal.adapter"}
_ENV_CLASS = {"mock": "mock", "local": "container", "modal": "container"}


def env_class(name: str) -> str:
    """The environment class of adapter ``name`` ("mock" or "container")."""
    try:
        return _ENV_CLASS[name]
    except KeyError:
        raise UsageError(f"unknown adapter {name!r}: choose one of {', '.join(NAMES)}") from None


def get(name: str, **kwargs: Any) -> Adapter:
    """Instantiate adapter ``name``; its module is imported only now."""
    env_class(name)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    adapter: Adapter = module.create(**kwargs)
    return adapter
