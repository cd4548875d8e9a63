"""The Python API; the CLI is a thin layer over it.

>>> result = theoryx.run("llm/litellm@1", inputs={"messages": [...]}, adapter="mock")
>>> result.cache, [o.path for o in result.outputs]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from theoryx.pipeline import writeprefix
from theoryx.pipeline.executor import RunRequest, RunResult, StreamFn, execute
from theoryx.store.handle import open_stores

__all__ = ["RunRequest", "RunResult", "run"]


def run(
    ref: str,
    *,
    inputs: Any = None,
    attachments: Mapping[str, str | Path] | None = None,
    adapter: str = "local",
    plan: str | None = None,
    write_prefix: str = writeprefix.DEFAULT,
    seed: int = 0,
    salt: str = "",
    no_cache: bool = False,
    adapter_options: Mapping[str, Any] | None = None,
    registry: str | None = None,
    home: str | Path | None = None,
    stream: StreamFn | None = None,
    build: bool = False,
) -> RunResult:
    """Run processor ``ref`` (``ns/name@version``) and return its typed result.

    Raises a :class:`theoryx.errors.TheoryxError` subclass (with a stable ``code`` and the
    ``execution_id`` of the failed execution) when anything goes wrong.
    """
    stores = open_stores(home)
    req = RunRequest(
        ref=ref, inputs={} if inputs is None else inputs,
        attachments={k: Path(v) for k, v in (attachments or {}).items()},
        adapter=adapter, plan=plan, write_prefix=write_prefix, seed=seed, salt=salt,
        no_cache=no_cache, adapter_options=dict(adapter_options or {}), registry=registry,
        stream=stream, build=build,
    )
    return execute(stores, req)
