"""RFC 8785 encoding of a cached item's action: the reference (pure Python) encoder against the
fast path, with ``json.dumps`` of the same value as the reference point, all in the same run.

    python bench/bench_canonical.py [--rounds 15] [--number 20000]

Values:
- inputs: a typical ``theoryx map`` item's inputs after defaults,
  ``{"messages": [{"role": "user", "content": "42"}], "model": "gpt-4o-mini"}``;
- inputs+float: the same with ``"temperature": 0.7`` and ``"max_tokens": 256``;
- action: the whole pre-image ``theoryx.pipeline.action.build`` encodes for ``llm/litellm@1``
  (spec, image and env as pre-encoded ``Encoded`` parts, the inputs above).

Rows: ns per encode to UTF-8 bytes, best and median of the rounds (the rounds interleave the
three encoders); ``slow`` is ``_encode`` (the reference, what every encode ran before the fast
path), ``fast`` is ``canonical_bytes``, ``json.dumps`` is
``json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)``
(not canonical; for the action value it cannot encode ``Encoded``, so its row uses the same body
with the parts as plain dicts, which is what the C encoder would have to walk).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from theoryx.core.canonical import Encoded, _encode, canonical_bytes  # noqa: E402


def slow(value: Any) -> bytes:
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False).encode("utf-8")


def action_values(inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pre-image ``build`` encodes (parts as ``Encoded``) and the same body with plain parts."""
    from theoryx.pipeline.action import build
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry.from_option(str(REPO / "registry")).load(Ref.parse("llm/litellm@1"))
    image = {"kind": "mock", "digest": "sha256:" + "0" * 64}
    env = {"class": "mock"}
    action = build(spec, image=image, env=env, inputs=inputs, write_prefix="/artifacts/o/", seed=0)
    body = action.body
    encoded = {**body, "spec": Encoded.of(body["spec"]), "image": Encoded.of(image), "env": Encoded.of(env)}
    assert canonical_bytes(encoded) == action.data == slow(body)
    return encoded, body


def measure(variants: dict[str, Callable[[], object]], rounds: int, number: int) -> dict[str, list[float]]:
    """ns per call of each variant, one sample per round, the variants interleaved."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, call in variants.items():
            samples[name].append(timeit.timeit(call, number=number) / number * 1e9)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    inputs = {"messages": [{"role": "user", "content": "42"}], "model": "gpt-4o-mini"}
    with_float = {**inputs, "temperature": 0.7, "max_tokens": 256}
    action, plain_body = action_values(inputs)
    cases = {"inputs": (inputs, inputs), "inputs+float": (with_float, with_float), "action": (action, plain_body)}
    print(f"python {sys.version.split()[0]}; ns per encode, best / median of {args.rounds} rounds of {args.number}")
    print(f"{'value':14s} {'slow':>17s} {'fast':>17s} {'json.dumps':>17s} {'slow/fast':>10s} {'fast/dumps':>11s}")
    for label, (value, dumpable) in cases.items():
        assert slow(value) == canonical_bytes(value)
        s = measure({"slow": partial(slow, value), "fast": partial(canonical_bytes, value),
                     "dumps": partial(dumps, dumpable)}, args.rounds, args.number)
        best = {k: min(v) for k, v in s.items()}
        med = {k: statistics.median(v) for k, v in s.items()}
        cells = " ".join(f"{best[k]:7.0f} / {med[k]:7.0f}" for k in ("slow", "fast", "dumps"))
        print(f"{label:14s} {cells} {best['slow'] / best['fast']:9.1f}x {best['fast'] / best['dumps']:10.2f}x")


if __name__ == "__main__":
    main()
