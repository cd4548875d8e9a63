"""data/textstats@1: deterministic statistics of one attached text or CSV file.

Reads (BUILD.md, "The processor contract"): ``THEORYX_INPUTS`` (JSON: ``file``, an ``$artifact``
object; ``format``: ``auto`` (default), ``text`` or ``csv``; ``top``: 0-1000, default 10),
``THEORYX_WRITE_PREFIX``, optionally ``THEORYX_RESULT``.

Writes ``<prefix>/stats.json`` (see ``stats.py`` for every field; sorted keys, two-space
indent, trailing newline: the same input always gives the same bytes) and, if asked,
``THEORYX_RESULT`` = ``{"usage": {}, "cost_usd": 0.0, "meta": {"format": ..., "bytes": ...}}``.
stdout: one summary line. Standard library only; no network.

Exit codes: 0 success; 2 bad inputs or contract environment (one ``bad inputs: ...`` line on
stderr, nothing written); 1 unexpected error (traceback).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

EXIT_OK, EXIT_BUG, EXIT_INPUTS = 0, 1, 2
OUTPUT = "stats.json"


class NoBytecodeLoader(importlib.machinery.SourceFileLoader):
    """A source loader that never writes ``__pycache__`` (the processor folder is a build
    context: files appearing in it would change its digest)."""

    def set_data(self, path: str, data: object, *, _mode: int = 0o666) -> None:
        pass


def load_sibling(filename: str, name: str) -> ModuleType:
    """Import ``filename`` from this file's folder by path: works as a script, in the container
    and when the executor loads ``mock.py`` by path (no package, no ``sys.path`` entry)."""
    path = str(Path(__file__).with_name(filename))
    spec = importlib.util.spec_from_file_location(name, path, loader=NoBytecodeLoader(name, path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stats = load_sibling("stats.py", "theoryx_textstats_stats")


def options(inputs: Mapping[str, Any]) -> tuple[str, str, int]:
    """``(world path, format, top)`` from the inputs; ``ValueError`` for a bad value. ``format``
    is resolved from ``auto`` with the file's name and mime."""
    file = inputs.get("file")
    if not isinstance(file, dict) or not isinstance(file.get("$artifact"), str):
        raise ValueError("'file' must be an $artifact object")
    path = file["$artifact"]
    fmt = stats.choose_format(inputs.get("format", "auto"), PurePosixPath(path).name,
                              file.get("mime"))
    top = inputs.get("top", stats.DEFAULT_TOP)
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= stats.MAX_TOP:
        raise ValueError(f"'top' must be an integer from 0 to {stats.MAX_TOP}, got {top!r}")
    return path, fmt, top


def summarize(data: bytes, inputs: Mapping[str, Any]) -> tuple[bytes, dict[str, Any], str]:
    """``(stats.json bytes, result, summary line)`` for the file's ``data``."""
    _, fmt, top = options(inputs)
    result = stats.compute(data, fmt, top)
    line = f"{fmt}: {result['bytes']} bytes, {result['lines']} lines, {result['words']} words"
    if fmt == "csv":
        line += f", {result['csv']['rows']} rows x {len(result['csv']['columns'])} columns"
    meta = {"format": fmt, "bytes": result["bytes"]}
    return stats.render(result), {"usage": {}, "cost_usd": 0.0, "meta": meta}, line + "\n"


def main(env: Mapping[str, str] | None = None) -> int:
    """Run under the contract; returns the exit code (see module docstring)."""
    env = os.environ if env is None else env
    try:
        for name in ("THEORYX_INPUTS", "THEORYX_WRITE_PREFIX"):
            if not env.get(name):
                raise ValueError(f"contract variable {name} not set")
        inputs = json.loads(Path(env["THEORYX_INPUTS"]).read_text(encoding="utf-8"))
        if not isinstance(inputs, dict):
            raise ValueError("inputs must be a JSON object")
        path, _, _ = options(inputs)
        body, result, line = summarize(Path(path).read_bytes(), inputs)
    except OSError as exc:
        print(f"bad inputs: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUTS
    except ValueError as exc:   # includes json.JSONDecodeError and malformed CSV
        print(f"bad inputs: {exc}", file=sys.stderr)
        return EXIT_INPUTS
    (Path(env["THEORYX_WRITE_PREFIX"]) / OUTPUT).write_bytes(body)
    if env.get("THEORYX_RESULT"):
        result_path = Path(env["THEORYX_RESULT"])
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.write_text(json.dumps(result, sort_keys=True), encoding="utf-8")
    sys.stdout.write(line)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
