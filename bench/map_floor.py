"""The floor of a cached batch item: the library calls a hit cannot do without, and nothing else.

    python bench/map_floor.py ITEMS.jsonl [--runs 3]

A reference for ``bench_map.py`` (run from the same interpreter, in the same run): per line of
the JSON Lines file, ``json.loads``; the inputs' canonical text through the C ``json.dumps``
(sorted keys, no spaces) inside a fixed action prefix; BLAKE3 of it; one LMDB read of the cache
entry and its msgpack decoding; a ``stat`` of each of the entry's five blobs; a new 26-character
id; a record packed with msgpack and put with the refreshed entry and two world paths, in
groups of 512 per write transaction (one commit and sync each); the output line through
``json.dumps``. No validation, leasing, budget, error handling or memory bounds: theoryx's hit
does all of those, so this is a lower bound on its cost per item, not a target.

Prints items/s and microseconds per item, best of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import blake3
import lmdb
import msgpack

PREFIX = '{"env":{"class":"mock"},"image":{"context":"b3:' + "c" * 64 + '"},"inputs":'
GROUP = 512


def action_key(inputs: object) -> bytes:
    text = PREFIX + json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + ',"seed":0}'
    return blake3.blake3(text.encode()).digest()


def entry(i: int) -> dict[str, object]:
    cid = "b3:" + f"{i:064x}"
    return {"memo_key": cid, "action_cid": cid, "manifest_cid": cid, "exit_code": 0, "stdout_cid": cid,
            "stderr_cid": None, "usage": {"tokens": 3}, "cost_micros": 0, "duration_ms": 1,
            "execution_id": "0" * 26, "adapter": "mock", "created_ms": 0, "last_used_ms": 0,
            "outputs": [{"path": f"/artifacts/outputs/{i}/{n}", "cid": cid, "size_bytes": 10,
                         "mime": "text/plain"} for n in ("a.json", "b.txt")]}


def one_run(lines: list[str], root: Path) -> float:
    env = lmdb.open(str(root / "db"), map_size=1 << 31, max_dbs=4)
    ac, ex, paths = (env.open_db(name) for name in (b"ac", b"executions", b"paths"))
    blobs = []
    for n in range(5):
        blob = root / f"blob{n}"
        blob.write_bytes(b"x" * 10)
        blobs.append(str(blob))
    with env.begin(write=True) as txn:
        for i, line in enumerate(lines):
            txn.put(action_key(json.loads(line)["inputs"]), msgpack.packb(entry(i)), db=ac)
    out = open(os.devnull, "w")
    group: list[tuple[bytes, bytes, bytes, bytes, list[bytes]]] = []
    t0 = time.perf_counter()
    for n, line in enumerate(lines, start=1):
        item = json.loads(line)
        key = action_key(item["inputs"])
        with env.begin(db=ac) as txn:
            found = msgpack.unpackb(txn.get(key))
        for blob in blobs:
            os.stat(blob)
        execution_id = os.urandom(13).hex()[:26]
        record = {"execution_id": execution_id, "ref": "llm/litellm@1", "adapter": "mock", "status": "success",
                  "cache": "hit", "memo_key": key, "outputs": found["outputs"], "usage": found["usage"],
                  "source_execution": found["execution_id"], "started_ms": int(time.time() * 1000)}
        packed = msgpack.packb(record)
        found["last_used_ms"] = record["started_ms"]
        group.append((execution_id.encode(), packed, key, msgpack.packb(found),
                      [o["path"].encode() for o in found["outputs"]]))
        out.write(json.dumps({"line": n, "id": item.get("id"), "status": "success", "execution_id": execution_id,
                              "cache": "hit", "outputs": found["outputs"]}) + "\n")
        if len(group) >= GROUP or n == len(lines):
            with env.begin(write=True) as txn:
                for eid, rec, memo, ent, world in group:
                    txn.put(eid, rec, db=ex)
                    txn.put(memo, ent, db=ac)
                    for path in world:
                        txn.put(path, eid, db=paths)
            group = []
    seconds = time.perf_counter() - t0
    env.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lines = [line for line in args.items.read_text().splitlines() if line.strip()]
    best = float("inf")
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            best = min(best, one_run(lines, Path(tmp)))
    print(f"floor: {len(lines) / best:.0f} items/s, {best / len(lines) * 1e6:.1f} us/item")


if __name__ == "__main__":
    main()
