"""Offline stand-in for ui/gallery@1: ``gallery.make`` in the executor's process."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def _gallery() -> Any:
    path = Path(__file__).with_name("gallery.py")
    spec = importlib.util.spec_from_file_location("theoryx_ui_gallery", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(inputs: dict[str, Any], outdir: Path, ctx: Any) -> dict[str, Any]:
    secret = ctx.request.secrets.get("UI_SECRET")
    text, result = _gallery().make(inputs, outdir, ctx.seed, secret, lambda p: ctx.resolve(p).read_bytes())
    ctx.stream(text)
    return dict(result)
