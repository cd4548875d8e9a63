"""``theoryx map`` throughput and memory, against references measured in the same run.

    python bench/bench_map.py [--hits 10000] [--misses 2000] [--stream 200000] [--settle 75]

- misses: N distinct mock items in a fresh home, timed first (after ``--settle``): items/s;
- hits: M distinct items run once (misses, mock adapter: the long-batch miss rate, which includes
  what the batch's own removed workspaces cost), then the same M again through ``theoryx map``:
  items/s of the all-cached batch;
- stream: a file of N identical items (one miss, then hits), run with ``--quiet --out``: peak
  resident memory of the process (``ru_maxrss``), which must not grow with N;
- references: ``python -c pass``, a plain JSON Lines parse of the same file (``json.loads``
  per line) and the floor of a cached item (``bench/map_floor.py``: the bare library calls a hit
  needs) from the same interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def items_file(path: Path, n: int, distinct: bool = True) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            content = str(i) if distinct else "same"
            f.write(json.dumps({"inputs": {"messages": [{"role": "user", "content": content}]}}) + "\n")
    return path


def timed_map(home: Path, items: Path, *extra: str) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one ``theoryx map`` process."""
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(REPO / "registry"))
    out = home.parent / "out.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "llm/litellm@1",
                             "--items", str(items), "--quiet", "--out", str(out), *extra], env=env)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"theoryx map failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss


def reference_parse(items: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import json,sys\nfor line in open(sys.argv[1]): json.loads(line)",
                    str(items)], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=10_000)
    parser.add_argument("--misses", type=int, default=2_000)
    parser.add_argument("--stream", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long before the misses and before the hits phase (files "
                             "removed in the previous minute slow every file created on an ext4 "
                             "without a journal: see bench/bench_inode_churn.py); 75 on this "
                             "project's benchmark machine")
    args = parser.parse_args()
    jobs = ("--jobs", str(args.jobs))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = time.perf_counter() - t0
    print(f"python -c pass: {bare * 1000:.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Misses first: on a journal-less ext4 the hits phase's tens of thousands of removed
        # workspace files would slow every file created in the next minutes (--settle does not
        # cover the five minutes an inode table block stays dirty).
        misses = items_file(root / "misses.jsonl", args.misses)
        time.sleep(args.settle)
        seconds, _ = timed_map(root / "h2", misses, *jobs)
        print(f"{args.misses} distinct mock misses (fresh home): {args.misses / seconds:8.1f} items/s")
        hits = items_file(root / "hits.jsonl", args.hits)
        time.sleep(args.settle)
        first, _ = timed_map(root / "h1", hits, *jobs)
        cached, _ = timed_map(root / "h1", hits, *jobs)
        parse = reference_parse(hits)
        print(f"{args.hits} misses then the same {args.hits} cached: {args.hits / first:8.1f} items/s (misses), "
              f"{args.hits / cached:8.1f} items/s (hits); JSON Lines parse of the file {args.hits / parse:9.0f} "
              f"lines/s -> hits at {parse / cached:.3f}x the parse rate")
        floor = subprocess.run([sys.executable, str(REPO / "bench" / "map_floor.py"), str(hits)], check=True,
                               capture_output=True, text=True).stdout.strip()
        floor_rate = float(floor.split()[1])
        print(f"  reference, the bare library calls of a hit (bench/map_floor.py, in-process, no start-up): "
              f"{floor} -> theoryx map's hits at {args.hits / cached / floor_rate:.2f}x the floor")
        for n in (args.stream // 10, args.stream):
            stream = items_file(root / f"stream{n}.jsonl", n, distinct=False)
            seconds, peak = timed_map(root / f"h3-{n}", stream, *jobs)
            print(f"{n} identical items (1 miss, then hits): {n / seconds:8.1f} items/s, "
                  f"peak RSS {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
