"""``llm/litellm@1`` on ``local``: persistent workers against one container per item.

A loopback OpenAI-compatible server (``tests/fakes/openai_server.py``, answering at once, in a
process of its own so that it does not compete with theoryx for the GIL, with Nagle's algorithm
off as any production HTTP server has it: otherwise every answer waits for a delayed ACK) stands
in for the model; the containers reach it on the host network. Two batches of *distinct* items
(every item a miss), each in a fresh home, through ``Session.map`` with the same ``--jobs``:

    workers    the shipped spec (``worker: {protocol: jsonl}``): N long-lived containers
    one-shot   the same spec without ``worker`` (a registry copy): one container per item. Its
               memo keys are the same as the workers' (the worker mode is not part of the key);
               the homes are separate so that both sides execute.

Reported per side: items, wall time, items/s (and, measured separately, the time to the first
result — container start-up and, for LiteLLM, its import — and the rate after it), and per item:
the time inside the container (the action result's ``duration_ms``: for a worker, request sent to
answer received), theoryx's own CPU (user + system time of this process divided by the items) and
the run time outside the container (the execution's ``duration_ms`` minus the former: theoryx's
work, fsyncs included, plus waiting for a free container). The image is built (or found) before
timing starts. Needs a running engine and the base image
(``make docker``).

    python bench/bench_workers.py [--items 1000] [--oneshot-items 100] [--jobs N] [--settle 75]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REF = "llm/litellm@1"
SERVER = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); from fakes import openai_server as o; "
          "o._Handler.disable_nagle_algorithm = True; sys.exit(o.main(['--reply', 'ok']))")
HOST_NET = {"network": "host"}


def items(n: int, tag: str, url: str) -> list[dict[str, Any]]:
    return [{"inputs": {"model": "gpt-4o-mini", "api_base": url,
                        "messages": [{"role": "user", "content": f"{tag} item {i}"}]}} for i in range(n)]


def oneshot_registry(root: Path) -> Path:
    """A copy of the shipped registry whose litellm spec declares no worker."""
    dest = root / "registry-oneshot"
    shutil.copytree(REPO / "registry", dest, ignore=shutil.ignore_patterns("__pycache__"))
    spec = dest / "processors" / "llm" / "litellm@1.yaml"
    text = spec.read_text()
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith("worker:")]
    assert len(kept) == len(text.splitlines()) - 1, "the shipped spec should declare one worker line"
    spec.write_text("".join(kept))
    return dest


def batch(home: Path, registry: Path, work: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    from theoryx.pipeline.session import Session
    from theoryx.store import action_cache

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    results, first = [], 0.0
    with Session(home, registry=str(registry)) as session:
        for r in session.map(REF, work, jobs=jobs, adapter="local", adapter_options=HOST_NET):
            if not r.ok:
                raise SystemExit(f"item {r.item.line} failed: {r.error}")
            first = first or time.perf_counter() - t0
            results.append(r.result)
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu_ms = ((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)) * 1000 / len(results)
        inside, overhead = [], []
        for res in results:
            assert res is not None and res.cache == "miss"
            entry = action_cache.get(session.stores.db, res.memo_key)
            assert entry is not None
            inside.append(entry.duration_ms)
            overhead.append(res.record.duration_ms - entry.duration_ms)
    n = len(results)
    keys = [r.memo_key for r in results if r is not None]
    return {"n": n, "wall": wall, "rate": n / wall, "keys": keys, "first": first,
            "after_first": (n - 1) / (wall - first) if n > 1 else 0.0, "cpu_ms": cpu_ms,
            "inside_ms": statistics.median(inside), "outside_ms": statistics.median(overhead)}


def show(name: str, r: dict[str, Any]) -> None:
    print(f"{name:<9} {r['n']:>5} items  {r['wall']:7.2f} s  {r['rate']:7.2f} items/s  (first result after "
          f"{r['first']:.1f} s, then {r['after_first']:.1f} items/s)\n"
          f"{'':<9} per item: in the container {r['inside_ms']:.0f} ms (median); theoryx CPU {r['cpu_ms']:.1f} ms "
          f"(user+sys of this process / items); run time outside the container {r['outside_ms']:.0f} ms "
          "(median; includes waiting for a free container)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--oneshot-items", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--settle", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long before timing: on an ext4 without a journal the files removed in "
                         "the last minute (a previous benchmark's homes) slow down every file created "
                         "(bench/bench_inode_churn.py); 75 on this project's benchmark machine")
    args = ap.parse_args()
    os.environ.setdefault("THEORYX_BASE_IMAGE", "theoryx/python-base:bookworm")
    os.environ["OPENAI_API_KEY"] = "sk-bench-" + os.urandom(6).hex()
    import theoryx

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        with tempfile.TemporaryDirectory(prefix="theoryx-bench-workers-") as tmp:
            root = Path(tmp)
            time.sleep(args.settle)
            t0 = time.perf_counter()
            theoryx.run(REF, inputs=items(1, "warm", url)[0]["inputs"], adapter="local", home=root / "warm",
                        registry=str(REPO / "registry"), adapter_options=HOST_NET)
            print(f"image ready and one warm-up run: {time.perf_counter() - t0:.1f} s; jobs={args.jobs}")
            w = batch(root / "home-workers", REPO / "registry", items(args.items, "w", url), args.jobs)
            show("workers", w)
            if args.oneshot_items:
                o = batch(root / "home-oneshot", oneshot_registry(root), items(args.oneshot_items, "w", url),
                          args.jobs)
                show("one-shot", o)
                same = w["keys"][:len(o["keys"])] == o["keys"]
                print(f"ratio: {w['rate'] / o['rate']:.1f}x items/s; memo keys of the shared items identical: {same}")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
