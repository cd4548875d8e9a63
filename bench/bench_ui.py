"""``theoryx ui`` over a large home: how fast the pages answer with 100,000 executions.

The home is filled by writing execution records straight through their owner module
(``theoryx.store.executions``; in batches when it offers ``record_many``), not by running 100,000
runs: realistic records (refs, adapters, hits and misses, failures, plans, outputs, costs) whose
ids spread over the last 30 days. Then the real ``theoryx ui --port 0`` is started on the home
and each page is fetched ``--repeat`` times with a plain HTTP client (``http.client``, a new
connection per request, like a browser's first visit), and with ``curl``; the first request of
each page (cold: nothing memoised) is shown apart. A static file fetched the same way is the
reference for what the server costs with no page to build. Medians are reported. The old way
of listing (``Database.items(reverse=True)``, which ``latest()`` used: the whole table read
before the first row) is timed on the same home for comparison.

Usage: python bench/bench_ui.py [--executions 100000] [--repeat 21] [--home DIR] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFS = ("llm/litellm@1", "data/textstats@1", "img/resize@2", "llm/summarize@3")
PLANS = (None, "team-a", "team-b", "research")
BATCH = 5_000


def fill(home: Path, n: int, seed: int = 7) -> float:
    """Write ``n`` records into ``home``; returns the seconds it took."""
    from theoryx.core.ids import new_execution_id
    from theoryx.store import executions
    from theoryx.store.action_cache import OutputEntry
    from theoryx.store.executions import ExecutionRecord
    from theoryx.store.handle import open_stores

    rnd = random.Random(seed)
    stores = open_stores(home)
    now = int(time.time() * 1000)
    start = now - 30 * 86_400_000
    times = sorted(rnd.randrange(start, now) for _ in range(n))
    batch_api = getattr(executions, "record_many", None)
    recording = getattr(executions, "Recording", None)
    t0 = time.perf_counter()
    batch: list[object] = []
    for i, ms in enumerate(times):
        eid = new_execution_id(ms)
        ref = REFS[rnd.randrange(len(REFS))]
        failed = rnd.random() < 0.04
        hit = not failed and rnd.random() < 0.55
        cost = 0 if hit else rnd.randrange(50, 40_000)
        h = f"{i:064x}"
        outputs = () if failed else (
            OutputEntry(f"/artifacts/outputs/{i % 50}/response.txt", f"b3:{h}", rnd.randrange(10, 4000), "text/plain"),
            OutputEntry(f"/artifacts/outputs/{i % 50}/metadata.json", f"b3:{h[::-1]}", 180, "application/json"))
        rec = ExecutionRecord(
            execution_id=eid, ref=ref, adapter=rnd.choice(("mock", "local", "local", "modal")),
            status="error" if failed else "success", cache=None if failed else ("hit" if hit else "miss"),
            plan=PLANS[rnd.randrange(len(PLANS))], memo_key=f"b3:{h}", action_cid=f"b3:{h}",
            spec_digest=f"b3:{h}", env_fingerprint="container linux/amd64", outputs=outputs,
            stdout_cid=f"b3:{h}", exit_code=1 if failed else 0,
            error={"code": "ERR_PROCESSOR_FAILED", "message": "exit 1"} if failed else None,
            cost_micros=cost, saved_micros=rnd.randrange(50, 40_000) if hit else 0,
            source_execution=eid if hit else None, started_ms=ms, duration_ms=rnd.randrange(5, 30_000),
            usage={"prompt_tokens": rnd.randrange(5, 900), "completion_tokens": rnd.randrange(5, 900)})
        if batch_api is not None and recording is not None:
            batch.append(recording(rec, None, False))
            if len(batch) >= BATCH:
                batch_api(stores.db, batch)
                batch = []
        else:   # one transaction (and one sync) per record: slow, but through the same owner
            executions.record(stores.db, rec, paths=False)
    if batch and batch_api is not None:
        batch_api(stores.db, batch)
    return time.perf_counter() - t0


def old_listing(home: Path) -> tuple[float, int]:
    """Seconds and rows until the first row of the old ``latest()`` (the whole table first)."""
    from theoryx.store.handle import open_stores

    db = open_stores(home).db
    t0 = time.perf_counter()
    rows = db.items("executions", reverse=True)   # what latest() iterated before this change
    next(rows)
    return time.perf_counter() - t0, sum(1 for _ in rows) + 1


def start_ui(home: Path) -> tuple[subprocess.Popen[str], str, int]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["THEORYX_HOME"] = str(home)
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "ui", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    host_port = url.split("//", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    return proc, host, int(port)


def fetch(host: str, port: int, path: str) -> tuple[float, int, int]:
    """(seconds, status, bytes) of one GET on a new connection."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return time.perf_counter() - t0, resp.status, len(body)


def curl(host: str, port: int, path: str) -> float:
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", f"http://{host}:{port}{path}"],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--home", type=Path, help="Use (and fill if empty) this home instead of a temporary one.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary home.")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="theoryx-bench-ui-"))
    try:
        from theoryx.store import executions
        from theoryx.store.handle import open_stores

        if executions.count(open_stores(home).db) == 0:
            took = fill(home, args.executions)
            print(f"filled {args.executions:,} execution records in {took:.1f} s")
        db = open_stores(home).db
        total = executions.count(db)
        newest = executions.page(db, limit=1).records[0].execution_id
        second = executions.page(db, limit=50).next_before
        old_s, rows = old_listing(home)
        print(f"home {home}: {total:,} executions")
        print(f"old listing (Database.items(reverse=True), the whole table first): first row after "
              f"{old_s * 1e3:.0f} ms ({rows:,} rows read)")
        t0 = time.perf_counter()
        page = executions.page(db, limit=50)
        print(f"executions.page(limit=50): {(time.perf_counter() - t0) * 1e3:.2f} ms, {page.scanned} records read")
        proc, host, port = start_ui(home)
        try:
            pages = [
                ("static file (reference)", "/static/style.css"),
                ("runs page (newest 50)", "/runs"),
                ("runs page 2 (cursor)", f"/runs?before={second}"),
                ("runs filtered (ref)", "/runs?ref=img/resize@2"),
                ("runs filtered, rare (plan nobody uses)", "/runs?plan=nobody"),
                ("one run", f"/runs/{newest}"),
                ("plans", "/plans"),
                ("store (then memoised)", "/store"),
                ("live poll (/api/head)", "/api/head"),
            ]
            fetch(host, port, "/static/style.css")   # the server is up and answering
            print(f"\n{'page':40} {'first':>9} {'http.client median':>19} {'min':>8} {'curl median':>12} "
                  f"{'status':>6} {'bytes':>9}")
            for name, path in pages:
                first, _, _ = fetch(host, port, path)   # cold: first LMDB reads, memos empty
                times, status, size = [], 0, 0
                for _ in range(args.repeat):
                    took, status, size = fetch(host, port, path)
                    times.append(took)
                curls = [curl(host, port, path) for _ in range(args.repeat)]
                print(f"{name:40} {first * 1e3:6.1f} ms {statistics.median(times) * 1e3:16.1f} ms "
                      f"{min(times) * 1e3:5.1f} ms "
                      f"{statistics.median(curls) * 1e3:9.1f} ms {status:>6} {size:>9,}")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
