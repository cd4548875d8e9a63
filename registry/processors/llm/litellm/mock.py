"""Offline stand-in for llm/litellm@1 (standard library only).

Writes ``text/response.txt`` = ``Mock response to N messages`` and ``metadata.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run(inputs: dict[str, Any], outdir: Path, ctx: Any) -> dict[str, Any]:
    messages = inputs.get("messages", [])
    text = f"Mock response to {len(messages)} messages"
    ctx.stream(text)
    (outdir / "text").mkdir(parents=True, exist_ok=True)
    (outdir / "text" / "response.txt").write_text(text)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
             "total_tokens": prompt_tokens + len(text.split())}
    meta = {"model": inputs.get("model", "gpt-4o-mini"), "mock": True, "usage": usage,
            "cost_usd": 0.0, "finish_reason": "stop"}
    (outdir / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {"usage": usage, "meta": {"model": meta["model"], "finish_reason": "stop"}}
