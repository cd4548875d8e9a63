"""Cache-hit latency of a whole ``theoryx run`` process, as a ratio to ``python -c pass``.

Both are measured in the same run with the same interpreter, interleaved, best and median of N.

Usage:
  python bench/bench_hit.py [--runs 20]
      this interpreter and the theoryx it imports (e.g. the project venv);
  python bench/bench_hit.py --against REV [--runs 100]
      a regular (wheel) install of this checkout against a wheel install of git revision REV
      (e.g. 48fd1ab, the layout before issue 9), each in a fresh venv of this interpreter, each
      reading its own registry; interleaved, plus a bootstrap estimate of P(median this > REV).
"""

from __future__ import annotations

import argparse
import json
import os
import random
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


def hit_env(python: str, registry: Path, home: str) -> dict[str, str]:
    """An environment in which ``python -m theoryx run`` is a hit (checked)."""
    env = dict(os.environ, THEORYX_HOME=home, THEORYX_REGISTRY=str(registry))
    env.pop("PYTHONDONTWRITEBYTECODE", None)      # a regular install has its .pyc files
    subprocess.run([python, *ARGS], env=env, check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([python, *ARGS, "--json"], env=env, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["cache"] == "hit", "the benchmark must measure hits"
    return env


def wheel_venv(tree: Path, where: Path) -> str:
    """A fresh venv of this interpreter with ``tree`` installed from its wheel; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    py = str(where / "bin" / "python")
    wheels = where / "wheels"
    subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(tree)], check=True,
                   stderr=subprocess.DEVNULL)
    subprocess.run([py, "-m", "pip", "install", "-q", *map(str, wheels.glob("*.whl"))], check=True,
                   stderr=subprocess.DEVNULL)
    return py


def report(name: str, times: list[float], bare: list[float]) -> None:
    print(f"{name:22s}: best {min(times) * 1000:6.1f} ms  median {statistics.median(times) * 1000:6.1f} ms  "
          f"ratio best {min(times) / min(bare):.2f}x  median {statistics.median(times) / statistics.median(bare):.2f}x")


def p_slower(this: list[float], other: list[float], n: int = 2000) -> float:
    """Bootstrap: the fraction of resamples in which this tree's median is above the other's."""
    rng = random.Random(0)
    return sum(statistics.median(rng.choices(this, k=len(this))) > statistics.median(rng.choices(other, k=len(other)))
               for _ in range(n)) / n


def against(rev: str, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old_tree = root / "old-tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(old_tree), rev], check=True)
        try:
            pys = {"this": wheel_venv(REPO, root / "venv-this"), rev: wheel_venv(old_tree, root / "venv-old")}
            regs = {"this": REPO / "registry", rev: old_tree / "registry"}
            envs = {k: hit_env(pys[k], regs[k], str(root / f"home-{i}")) for i, k in enumerate(pys)}
            times: dict[str, list[float]] = {k: [] for k in pys}
            bare: list[float] = []
            for _ in range(runs):
                bare.append(timed([pys["this"], "-c", "pass"], envs["this"]))
                for k in pys:
                    times[k].append(timed([pys[k], *ARGS], envs[k]))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old_tree)], check=False)
    report("python -c pass", bare, bare)
    report(f"hit, {rev} (wheel)", times[rev], bare)
    report("hit, this tree (wheel)", times["this"], bare)
    means = {k: statistics.mean(v) * 1000 for k, v in times.items()}
    print(f"mean: {rev} {means[rev]:.1f} ms, this {means['this']:.1f} ms;"
          f" P(median this > median {rev}) = {p_slower(times['this'], times[rev]):.2f} (bootstrap)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--against", metavar="REV", help="compare wheel installs of this tree and of REV")
    args = parser.parse_args()
    if args.against:
        against(args.against, args.runs)
        return
    with tempfile.TemporaryDirectory() as home:
        env = hit_env(sys.executable, REPO / "registry", home)
        hit, bare = [], []
        for _ in range(args.runs):
            bare.append(timed([sys.executable, "-c", "pass"], env))
            hit.append(timed([sys.executable, *ARGS], env))
    report("python -c pass", bare, bare)
    report("theoryx run hit", hit, bare)


if __name__ == "__main__":
    main()
