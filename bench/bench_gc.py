"""gc and verify at scale: a store of 1,000,000 blobs, half of them unreachable.

How the store is made, fast: no run is executed. Blob files are written straight into the CAS
layout (``cas-v1/blobs/<2 hex>/<62 hex>``, mode 0444, named by the BLAKE3 of their bytes, mtime
set two hours back through the open descriptor) by one process per core, and the database gets
one cache entry and one execution record per live group in a single write transaction. Each
group names 8 tiny blobs (action pre-image — which names a shared context manifest — manifest,
two outputs, stdout, stderr, receipt, index), so that half of the store is live and the
other half is garbage that nothing names. Blobs are 15-70 bytes: the cost measured is per blob
(directory walk, stat, rename, unlink, open/read/hash), the worst case for a collector.

Then, each as its own ``theoryx`` process (wall seconds and peak RSS from ``wait4``):

    verify            theoryx verify --json          (rehash on a thread pool + check references)
    b3sum             find blobs -type f | xargs -P <cores> b3sum   (the hashing reference)
    gc --dry-run      theoryx gc --dry-run --json
    gc                theoryx gc --json              (reclaims the unreachable half)
    gc again          theoryx gc --json              (nothing left to do)

and prints verify's throughput as a ratio to b3sum's over the same blobs, in the same run.
Everything is removed at the end unless ``--keep``.

    python bench/bench_gc.py [--blobs 1000000] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import blake3

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PER_GROUP = 8
AGE_S = 2 * 3600


def main() -> None:
    args = _parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="theoryx-bench-gc-", dir=args.dir))
    try:
        _run(workdir / "home", args.blobs)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=1_000_000, help="blobs in the store (default 1,000,000)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store (default: $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="leave the store behind")
    return parser.parse_args()


def _run(home: Path, blobs: int) -> None:
    t0 = time.monotonic()
    groups, garbage = _build(home, blobs)
    os.sync()  # measure gc, not the writeback of the store just built
    total = groups * PER_GROUP + 1 + garbage
    print(f"store: {total:,} blobs ({groups * PER_GROUP + 1:,} live in {groups:,} cache entries, "
          f"{garbage:,} unreachable), built in {time.monotonic() - t0:.1f} s")
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}")
    print()
    rows = []
    verify = _theoryx(home, "verify", "--json")
    assert verify.body["clean"] and verify.body["checked"]["count"] == total, verify.body
    rows.append(("verify", verify))
    b3 = _b3sum(home)
    rows.append(("b3sum", b3))
    dry = _theoryx(home, "gc", "--dry-run", "--json")
    rows.append(("gc --dry-run", dry))
    real = _theoryx(home, "gc", "--json")
    rows.append(("gc", real))
    assert real.body["reclaimed"]["count"] == garbage == dry.body["reclaimed"]["count"], real.body
    again = _theoryx(home, "gc", "--json")
    assert again.body["reclaimed"]["count"] == 0
    rows.append(("gc again", again))
    after = _theoryx(home, "verify", "--json")
    assert after.body["clean"] and after.body["checked"]["count"] == total - garbage, after.body

    print(f"{'operation':<14}{'wall s':>9}{'own s':>9}{'peak RSS':>11}  notes")
    for name, m in rows:
        own = f"{m.body['seconds']:.2f}" if m.body and "seconds" in m.body else "-"
        note = ""
        if name.startswith("gc"):
            note = (f"examined {m.body['examined']['count']:,}, reclaimed {m.body['reclaimed']['count']:,}, "
                    f"kept {m.body['kept']['count']:,}")
        print(f"{name:<14}{m.seconds:>9.2f}{own:>9}{m.peak_mib:>8.0f} MiB  {note}")
    print()
    per_s = total / verify.seconds
    b3_per_s = total / b3.seconds
    hash_per_s = total / verify.body["hash_seconds"]
    print(f"verify: {per_s:,.0f} blobs/s in all, {hash_per_s:,.0f} blobs/s while rehashing; "
          f"b3sum: {b3_per_s:,.0f} blobs/s")
    print(f"verify / b3sum throughput = {per_s / b3_per_s:.2f} in all, {hash_per_s / b3_per_s:.2f} for the rehash")
    print(f"gc: {total / real.seconds:,.0f} blobs examined/s, {garbage / real.seconds:,.0f} reclaimed/s")


class _Measure:
    def __init__(self, seconds: float, peak_kib: int, body: Any) -> None:
        self.seconds = seconds
        self.peak_mib = peak_kib / 1024
        self.body = body


def _child(args: list[str], env: dict[str, str] | None = None, shell: bool = False) -> _Measure:
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, shell=shell, cwd=REPO)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 123):
        raise SystemExit(f"{args} failed with {proc.returncode}")
    try:
        body = json.loads(out) if out.strip().startswith(b"{") else None
    except ValueError:
        body = None
    return _Measure(seconds, usage.ru_maxrss, body)


def _theoryx(home: Path, *args: str) -> _Measure:
    env = dict(os.environ, THEORYX_HOME=str(home))
    return _child([sys.executable, "-m", "theoryx", *args], env=env)


def _b3sum(home: Path) -> _Measure:
    if shutil.which("b3sum") is None:
        raise SystemExit("b3sum is missing: apt-get install b3sum")
    blobs = home / "cas-v1" / "blobs"
    cmd = f"find {blobs} -type f -print0 | xargs -0 -n 20000 -P {os.cpu_count()} b3sum > /dev/null"
    # The shell's rusage is not the workers': time only (peak shown is the shell's).
    return _child(["bash", "-c", cmd])


# -- building the store ------------------------------------------------------------------------

def _build(home: Path, blobs: int) -> tuple[int, int]:
    from theoryx.store.handle import open_stores

    stores = open_stores(home)
    groups = blobs // 2 // PER_GROUP
    garbage = blobs - groups * PER_GROUP - 1
    context = b'{"files":{}}'
    ctx_cid = _cid(context)
    contents = [context]
    for i in range(groups):
        contents += [f'{{"i":{i},"image":{{"context":"{ctx_cid}"}}}}'.encode(), *(
            f"{kind} {i}".encode() for kind in ("manifest", "a", "b", "stdout", "stderr", "receipt", "index"))]
    contents += [f"garbage {j}".encode() for j in range(garbage)]
    workers = os.cpu_count() or 1
    chunks = [contents[k::workers] for k in range(workers)]
    root = stores.cas.root / "blobs"
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_chunk, [root] * workers, chunks))
    _fill_db(stores, groups, [_cid(c) for c in contents[1: 1 + groups * PER_GROUP]])
    return groups, garbage


def _cid(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def _write_chunk(root: Path, contents: list[bytes]) -> None:
    then = time.time() - AGE_S
    for data in contents:
        hexdigest = blake3.blake3(data).hexdigest()
        shard = root / hexdigest[:2]
        path = shard / hexdigest[2:]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileNotFoundError:
            shard.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
            os.utime(fd, (then, then))
        finally:
            os.close(fd)


def _fill_db(stores: Any, groups: int, cids: list[str]) -> None:
    from theoryx.core.ids import new_execution_id
    from theoryx.store.action_cache import ActionResult, OutputEntry
    from theoryx.store.db import pack
    from theoryx.store.executions import ExecutionRecord

    now = int(time.time() * 1000)
    dbs = stores.db.dbs

    def fn(txn: Any) -> None:
        for i in range(groups):
            action, manifest, a, b, out, err, receipt, index = cids[i * PER_GROUP: (i + 1) * PER_GROUP]
            memo_key = _cid(f"memo {i}".encode())
            exec_id = new_execution_id(now - AGE_S * 1000 + i)
            outputs = (OutputEntry(f"/artifacts/outputs/{i}/a.txt", a, 10, "text/plain"),
                       OutputEntry(f"/artifacts/outputs/{i}/b.txt", b, 10, "text/plain"))
            entry = ActionResult(memo_key, action, manifest, outputs, 0, out, err, {}, 0, 1, exec_id,
                                 "mock", now, now - i)
            rec = ExecutionRecord(exec_id, "bench/blobs@1", "mock", "success", cache="miss", memo_key=memo_key,
                                  action_cid=action, outputs=outputs, manifest_cid=manifest, index_cid=index,
                                  receipt_cid=receipt, stdout_cid=out, stderr_cid=err, exit_code=0,
                                  started_ms=now - AGE_S * 1000)
            txn.put(memo_key.encode(), pack(entry.to_dict()), db=dbs["ac"])
            txn.put(exec_id.encode(), pack(rec.to_dict()), db=dbs["executions"])

    stores.db.write(fn)
    from theoryx.store.db import close_all

    close_all()


if __name__ == "__main__":
    main()
