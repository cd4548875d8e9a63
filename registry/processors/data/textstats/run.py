"""data/textstats@1: deterministic statistics of one attached text or CSV file.

Reads (BUILD.md, "The processor contract"): ``THEORYX_INPUTS`` (JSON: ``file``, an ``$artifact``
object; ``format``: ``auto`` (default), ``text`` or ``csv``; ``top``: 0-1000, default 10),
``THEORYX_WRITE_PREFIX``, optionally ``THEORYX_RESULT``.

Writes ``<prefix>/stats.json`` (see ``stats.py`` for every field; sorted keys, two-space
indent, trailing newline: the same input always gives the same bytes) and, if asked,
``THEORYX_RESULT`` = ``{"usage": {}, "cost_usd": 0.0, "meta": {"format": ..., "bytes": ...}}``.
stdout: one summary line. Standard library only; no network.

Worker mode (``THEORYX_WORKER=jsonl``, BUILD.md "Persistent workers"): one request per stdin
line, one answer ``{"id", "exit_code"}`` per stdout line; each request is a one-shot run, what
it prints going to the request's ``stdout_path`` and ``stderr_path``.

Exit codes: 0 success; 2 bad inputs or contract environment (one ``bad inputs: ...`` line on
stderr, nothing written); 1 unexpected error (traceback).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, BinaryIO, TextIO

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


# -- persistent worker mode (BUILD.md, "Persistent workers") -------------------------------

def request_env(env: Mapping[str, str], request: Mapping[str, Any]) -> dict[str, str]:
    """The contract environment of one worker request: the worker's own environment (secrets
    included) with the request's paths, seed and execution id."""
    return {**env, "THEORYX_INPUTS": str(request["inputs_path"]),
            "THEORYX_WRITE_PREFIX": str(request["outputs_dir"]),
            "THEORYX_RESULT": str(request["result_path"]), "THEORYX_SEED": str(request["seed"]),
            "THEORYX_EXECUTION_ID": str(request["execution_id"]), "THEORYX_STREAM": "0"}


@contextlib.contextmanager
def redirected(stdout_path: str, stderr_path: str) -> Iterator[None]:
    """File descriptors 1 and 2 (so ``sys.stdout``, ``sys.stderr`` and any library writing to
    them) pointed at one request's log files for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        for fd, path in ((1, stdout_path), (2, stderr_path)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def serve(requests: BinaryIO, answers: TextIO, env: Mapping[str, str] | None = None) -> int:
    """Serve requests until end of input (``THEORYX_WORKER=jsonl``): one JSON request per line
    on ``requests``, one JSON answer ``{"id", "exit_code"[, "error"]}`` per line on ``answers``.
    Each request runs :func:`main` under its own paths, what it prints going to the request's
    ``stdout_path`` and ``stderr_path``; nothing is kept between requests."""
    env = os.environ if env is None else env
    for raw in requests:
        if not raw.strip():
            continue
        answer: dict[str, Any]
        request: Any = None
        try:
            request = json.loads(raw)
            rid = request["id"]
            renv = request_env(env, request)
            logs = str(request["stdout_path"]), str(request["stderr_path"])
        except (ValueError, KeyError, TypeError) as exc:
            rid = request.get("id") if isinstance(request, dict) else None
            answer = {"id": rid, "exit_code": EXIT_INPUTS, "error": f"malformed request: {exc!r}"}
        else:
            with redirected(*logs):
                try:
                    code = main(renv)
                except Exception:   # a bug: the traceback goes to the request's stderr, the worker goes on
                    traceback.print_exc()
                    code = EXIT_BUG
            answer = {"id": rid, "exit_code": code}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return EXIT_OK


def serve_stdio() -> int:
    """:func:`serve` on the process's stdin and stdout. File descriptor 1 is pointed at stderr
    first, so that nothing but answers (not even a library writing to fd 1) reaches stdout."""
    sys.stdout.flush()
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    sys.exit(serve_stdio() if os.environ.get("THEORYX_WORKER") == "jsonl" else main())
