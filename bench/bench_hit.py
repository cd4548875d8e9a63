"""Cache-hit latency of a whole ``theoryx run`` process, as a ratio to ``python -c pass``.

Both are measured in the same run with the same interpreter, interleaved, best and median of N.
Usage: python bench/bench_hit.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARGS = ["-m", "theoryx", "run", "--adapter", "mock", "--ref", "llm/litellm@1",
        "--inputs-json", json.dumps({"messages": [{"role": "user", "content": "Hello"}]})]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, THEORYX_HOME=home, THEORYX_REGISTRY=str(REPO / "registry"))
        subprocess.run([sys.executable, *ARGS], env=env, check=True, stdout=subprocess.DEVNULL)
        out = subprocess.run([sys.executable, *ARGS, "--json"], env=env, check=True, capture_output=True, text=True)
        assert json.loads(out.stdout)["cache"] == "hit", "the benchmark must measure hits"
        hit, bare = [], []
        for _ in range(args.runs):
            bare.append(timed([sys.executable, "-c", "pass"], env))
            hit.append(timed([sys.executable, *ARGS], env))
    print(f"python -c pass : best {min(bare) * 1000:7.1f} ms  median {statistics.median(bare) * 1000:7.1f} ms")
    print(f"theoryx run hit: best {min(hit) * 1000:7.1f} ms  median {statistics.median(hit) * 1000:7.1f} ms")
    print(f"ratio (best)   : {min(hit) / min(bare):.2f}x")
    print(f"ratio (median) : {statistics.median(hit) / statistics.median(bare):.2f}x  (target <= 2.5x)")


if __name__ == "__main__":
    main()
