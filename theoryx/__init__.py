"""theoryx: a content-addressed, build-system-style executor for processors.

Public surface (imported lazily so that ``import theoryx`` stays cheap)::

    with theoryx.Session(home=...) as s:          # one home, many runs
        result = s.run(ref, inputs=..., attachments=..., adapter="mock", ...)
        result.output("reply.json").json()         # outputs, checked against their cids
    theoryx.run(ref, ..., home=...) -> RunResult   # a one-shot session
    for r in s.map(ref, items, ...): ...           # theoryx.ItemResult per theoryx.Item
    theoryx.RunResult, theoryx.Output, theoryx.RunRequest, theoryx.TheoryxError
    theoryx.errors                                 # every error class, with its stable code
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)


__version__ = "0.1.0"
__all__ = ["Item", "ItemResult", "Output", "RunRequest", "RunResult", "Session", "TheoryxError", "__version__",
           "errors", "run"]

if TYPE_CHECKING:
    from typing import Any

    from theoryx import errors
    from theoryx.errors import TheoryxError
    from theoryx.pipeline.batch import Item, ItemResult
    from theoryx.pipeline.request import RunRequest
    from theoryx.pipeline.result import Output, RunResult
    from theoryx.pipeline.session import Session, run

_LAZY = {
    "Session": "theoryx.pipeline.session", "run": "theoryx.pipeline.session",
    "RunResult": "theoryx.pipeline.result", "Output": "theoryx.pipeline.result",
    "RunRequest": "theoryx.pipeline.request", "TheoryxError": "theoryx.errors",
    "Item": "theoryx.pipeline.batch", "ItemResult": "theoryx.pipeline.batch",
}
_SUBMODULES = frozenset({"errors"})     # `theoryx.errors.BudgetExceeded` after a bare `import theoryx`


def __getattr__(name: str) -> Any:
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f"theoryx.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'theoryx' has no attribute {name!r}")

    return getattr(importlib.import_module(module), name)
