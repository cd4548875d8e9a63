"""Offline stand-in for data/textstats@1: the real computation, in the executor's process.

``run(inputs, outdir, ctx)`` writes the same ``stats.json`` bytes as ``run.py`` would in the
container (both call ``stats.py``; this file is loaded by path, so ``run.py`` is loaded by path
too) and returns the same result. Bad inputs raise ``ValueError``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any


class _NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    def set_data(self, path: str, data: object, *, _mode: int = 0o666) -> None:
        pass   # never write __pycache__ into the registry (a hashed build context)


def _load_run() -> ModuleType:
    path = str(Path(__file__).with_name("run.py"))
    name = "theoryx_textstats_run"
    spec = importlib.util.spec_from_file_location(name, path, loader=_NoBytecodeLoader(name, path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_run = _load_run()


def run(inputs: dict[str, Any], outdir: Path, ctx: Any) -> dict[str, Any]:
    """Compute ``stats.json`` for ``inputs["file"]`` (resolved through ``ctx.resolve``)."""
    world_path, _, _ = _run.options(inputs)
    data = ctx.resolve(world_path).read_bytes()
    body, result, line = _run.summarize(data, inputs)
    (outdir / _run.OUTPUT).write_bytes(body)
    ctx.stream(line)
    return dict(result)
