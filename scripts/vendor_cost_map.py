"""Refresh theoryx/budget/data/litellm_cost_map.json from the installed litellm.

Usage: ``.venv/bin/python scripts/vendor_cost_map.py`` (needs the ``theoryx[llm]`` extra).
The copy is LiteLLM's bundled cost map trimmed to what :mod:`theoryx.budget.pricing` reads,
one model per line so that a refresh reviews as a readable diff. LiteLLM is MIT licensed; its
notice stays beside the copy in ``LICENSE-litellm.txt``.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

from theoryx.budget import pricing

OUT = Path(__file__).resolve().parent.parent / "theoryx" / "budget" / pricing.VENDORED_COST_MAP


def render(models: dict[str, dict[str, object]], litellm_version: str) -> str:
    """The file's text: a ``source`` object, then ``models`` with one entry per line."""
    source = {"package": "litellm", "version": litellm_version, "file": pricing.COST_MAP,
              "license": "MIT (see LICENSE-litellm.txt)", "trimmed_by": "theoryx.budget.pricing.trim_cost_map"}
    lines = [f"{json.dumps(name)}: {json.dumps(entry, sort_keys=True)}" for name, entry in sorted(models.items())]
    return '{"source": ' + json.dumps(source) + ',\n"models": {\n' + ",\n".join(lines) + "\n}}\n"


def main() -> int:
    path = pricing.cost_map_path()
    if path is None:
        print("litellm is not installed: pip install 'theoryx[llm]'", file=sys.stderr)
        return 1
    text = render(pricing.trim_cost_map(json.loads(path.read_bytes())), version("litellm"))
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
