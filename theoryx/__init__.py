"""theoryx: a content-addressed, build-system-style executor for processors.

Public surface (imported lazily so that ``import theoryx`` stays cheap)::

    theoryx.run(ref, inputs=..., attachments=..., adapter="mock", ...) -> RunResult
    theoryx.RunResult, theoryx.TheoryxError
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RunResult", "TheoryxError", "__version__", "run"]

if TYPE_CHECKING:
    from theoryx.errors import TheoryxError
    from theoryx.pipeline.api import RunResult, run


def __getattr__(name: str) -> Any:
    if name in ("run", "RunResult"):
        from theoryx.pipeline import api

        return getattr(api, name)
    if name == "TheoryxError":
        from theoryx.errors import TheoryxError

        return TheoryxError
    raise AttributeError(name)
