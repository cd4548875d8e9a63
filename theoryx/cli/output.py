"""Shared CLI output helpers: showing outputs and writing files atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import click

from ..action_cache import OutputEntry
from ..stores import Stores

SHOW_LIMIT = 4096


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in ("application/json", "application/x-ndjson", "application/yaml")


def show_outputs(stores: Stores, outputs: Iterable[OutputEntry]) -> None:
    """``Outputs:`` then each path with its text, or its size and mime for binary/large ones."""
    click.echo("Outputs:")
    for o in outputs:
        if _is_text(o.mime) and o.size <= SHOW_LIMIT:
            try:
                text = stores.cas.read(o.cid).decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                click.echo(f"  {o.path}:")
                for line in text.rstrip("\n").splitlines() or [""]:
                    click.echo(f"    {line}")
                continue
        click.echo(f"  {o.path}: {o.size} bytes, {o.mime} (theoryx cat {o.path})")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dollars(micros: int) -> str:
    """Integer micro-USD shown as dollars."""
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    return f"{sign}${micros // 1_000_000}.{micros % 1_000_000:06d}"
