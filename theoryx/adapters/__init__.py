"""Adapters by name, imported lazily: a cache hit never loads docker or modal.

``env_class(name)`` is known without importing the adapter (it enters the memo key).
``check_options(name, options, spec)`` validates adapter options against the adapter's declared
schema (``OPTIONS`` in its module) without creating the adapter: no engine is contacted and no
client library (docker, modal) is imported, so the pipeline refuses bad options before it writes
anything.
"""

from __future__ import annotations

import importlib

from theoryx.errors import UsageError

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from theoryx.adapters.base import Adapter, Workers
    from theoryx.spec.model import ProcessorSpec

NAMES = ("local", "mock", "modal")
_MODULES = {"mock": "mock", "local": "local.adapter", "modal": "modal.adapter"}
# modal is its own class: a Sandbox is not local's container (writable root, no pids/tmpfs limits or
# dropped capabilities, maybe root; BUILD.md, section 9), so their results never answer each other.
_ENV_CLASS = {"mock": "mock", "local": "container", "modal": "modal"}


def env_class(name: str) -> str:
    """The environment class of adapter ``name`` ("mock", "container" or "modal")."""
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


def workers(name: str, **kwargs: Any) -> Workers | None:
    """Persistent workers for one batch on adapter ``name`` (its module's ``workers(**kwargs)``),
    or None when the adapter has none. Creating them contacts no engine: workers start when a
    miss first needs one (a batch of hits never does)."""
    env_class(name)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    factory = getattr(module, "workers", None)
    return None if factory is None else factory(**kwargs)


def check_options(name: str, options: Mapping[str, Any], spec: ProcessorSpec | None = None) -> dict[str, Any]:
    """The validated ``options`` of adapter ``name`` (see :class:`theoryx.adapters.base.OptionSchema`);
    :class:`~theoryx.errors.AdapterOptionsError` for an unknown key, a wrong type or range, or —
    given ``spec`` — an option that relaxes a sandbox switch the spec keeps closed."""
    env_class(name)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    values: dict[str, Any] = module.OPTIONS.parse(options, spec)
    return values
