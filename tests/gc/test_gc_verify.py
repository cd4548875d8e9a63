"""verify: every kind of rot is found, --repair makes the next run re-execute, orphans are not rot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gc_support import blob_files, garbage, run, verify_json
from theoryx_testing import Cli

import theoryx


def messages(n: int) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"m{i}"} for i in range(n)]}


def run_n(home: Path, n: int) -> theoryx.RunResult:
    return run(home, inputs=messages(n))


def output(result: theoryx.RunResult, name: str) -> str:
    return next(o.cid for o in result.outputs if o.path.endswith(name))


def rewrite(path: Path, fn: Any) -> None:
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(fn(data))
    os.chmod(path, 0o444)


def flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def test_verify_finds_flipped_truncated_zeroed_swapped_and_missing_blobs(home: Path, cli: Cli) -> None:
    results = {n: run_n(home, n) for n in range(1, 7)}
    files = blob_files(home)
    flipped = output(results[1], "response.txt")
    truncated = results[2].record.manifest_cid or ""
    zeroed = output(results[3], "metadata.json")
    swapped = (results[4].record.action_cid or "", results[4].record.receipt_cid or "")
    missing = results[5].record.index_cid or ""
    rewrite(files[flipped], flip)
    rewrite(files[truncated], lambda d: d[: len(d) // 2])
    rewrite(files[zeroed], lambda d: bytes(len(d)))
    a, b = files[swapped[0]].read_bytes(), files[swapped[1]].read_bytes()
    rewrite(files[swapped[0]], lambda _: b)
    rewrite(files[swapped[1]], lambda _: a)
    files[missing].unlink()

    code, body = verify_json(cli)
    assert code == 1 and body["clean"] is False
    assert {p["cid"] for p in body["corrupt"]} == {flipped, truncated, zeroed, *swapped}
    assert [p["cid"] for p in body["missing"]] == [missing]
    assert sorted(body["broken_cache_entries"]) == sorted(results[n].memo_key for n in range(1, 6))
    needed = {p["cid"]: p["needed_by"] for p in body["corrupt"] + body["missing"]}
    assert any(results[1].memo_key in who for who in needed[flipped])
    assert any(results[5].execution_id in who for who in needed[missing])
    assert cli("verify").exit_code == 1

    code, body = verify_json(cli, "--repair")
    assert code == 0 and body["clean"] is True
    assert body["repaired"] == {"blobs_removed": 5, "cache_entries_removed": 5, "blobs_reinstated": 0,
                                "quarantined_removed": 0}
    assert not {flipped, truncated, zeroed, *swapped} & set(blob_files(home))
    for n in range(1, 6):
        again = run_n(home, n)
        assert again.cache == "miss", n
        assert again.outputs == results[n].outputs
    assert run_n(home, 6).cache == "hit"
    code, body = verify_json(cli)
    assert code == 0 and body["corrupt"] == [] and body["missing"] == []


def test_orphans_are_reported_but_not_rot(home: Path, cli: Cli) -> None:
    run_n(home, 1)
    junk = garbage(home, 3)
    code, body = verify_json(cli)
    assert code == 0 and body["clean"] is True
    assert body["orphaned"]["blobs"]["count"] == len(junk)
    human = cli("verify")
    assert human.exit_code == 0 and "clean" in human.stdout and "3 blobs" in human.stdout


def test_a_pinned_execution_with_rot_cannot_be_repaired_until_unpinned(home: Path, cli: Cli) -> None:
    result = run_n(home, 2)
    assert cli("pin", result.execution_id).exit_code == 0
    rewrite(blob_files(home)[output(result, "metadata.json")], flip)
    code, body = verify_json(cli, "--repair")
    assert code == 1 and body["broken_pins"] == [result.execution_id]
    assert body["repaired"]["blobs_removed"] == 1
    assert "theoryx unpin" in cli("verify").stdout
    assert cli("unpin", result.execution_id).exit_code == 0
    code, body = verify_json(cli)
    assert code == 0 and body["pruned_executions"] == 1



def test_repair_removes_only_the_file_it_judged_not_a_good_copy_written_back_since(
        home: Path, cli: Cli, monkeypatch: Any) -> None:
    """A run writes a blob's good bytes back while verify --repair is between its hashing and its
    repair: the good copy stays (repair used to delete whatever sat at the name)."""
    from theoryx.store import verify as verify_mod
    from theoryx.store.handle import open_stores

    result = run_n(home, 1)
    cid = output(result, "response.txt")
    path = blob_files(home)[cid]
    good = path.read_bytes()
    rewrite(path, lambda d: d[: len(d) // 2])
    original = verify_mod._Verifier.fix

    def written_back_first(self: Any, snap: Any, corrupt: dict[str, int]) -> None:
        path.unlink()                                    # as a --no-cache run would re-store it
        open_stores(home).cas.put_bytes(good)
        original(self, snap, corrupt)

    monkeypatch.setattr(verify_mod._Verifier, "fix", written_back_first)
    assert cli("verify", "--repair").exit_code in (0, 1)
    assert path.read_bytes() == good
    assert open_stores(home).cas.verify(cid)
