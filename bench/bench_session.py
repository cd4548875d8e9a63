"""Cached runs in one Python process: ``Session.run`` in a loop against one-shot ``theoryx.run``.

A ``Session`` opens the home once; ``theoryx.run`` opens a one-shot session per call (what
``api.run`` did before sessions existed). Both are measured in the same run, on the mock adapter,
after one miss has filled the cache; every call must be a hit.
Usage: python bench/bench_session.py [--calls 10000] [--oneshot-calls 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import theoryx

REPO = Path(__file__).resolve().parent.parent
REF = "llm/litellm@1"
INPUTS = {"messages": [{"role": "user", "content": "Hello"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--oneshot-calls", type=int, default=1_000)
    args = parser.parse_args()
    registry = str(REPO / "registry")
    with tempfile.TemporaryDirectory() as home:
        with theoryx.Session(home, registry=registry) as s:
            assert s.run(REF, inputs=INPUTS, adapter="mock").cache == "miss"
            t0 = time.perf_counter()
            for _ in range(args.calls):
                assert s.run(REF, inputs=INPUTS, adapter="mock").cache == "hit"
            session_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.oneshot_calls):
            assert theoryx.run(REF, inputs=INPUTS, adapter="mock", home=home, registry=registry).cache == "hit"
        oneshot_s = time.perf_counter() - t0
    per_session = session_s / args.calls
    per_oneshot = oneshot_s / args.oneshot_calls
    print(f"Session.run loop : {args.calls} hits in {session_s:6.2f} s  {1 / per_session:8.0f} hits/s  "
          f"{per_session * 1e3:6.3f} ms/hit")
    print(f"theoryx.run loop : {args.oneshot_calls} hits in {oneshot_s:6.2f} s  {1 / per_oneshot:8.0f} hits/s  "
          f"{per_oneshot * 1e3:6.3f} ms/hit")
    print(f"ratio (one-shot / session per hit): {per_oneshot / per_session:.2f}x")


if __name__ == "__main__":
    main()
