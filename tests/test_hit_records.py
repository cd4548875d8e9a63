"""A hit stores no blobs: its receipt and output index are derived from its record, and a batch
commits hit records in groups — while `cat`, `show`, `export`, receipts and audits keep working
for every execution."""

from __future__ import annotations

import json
from pathlib import Path

from theoryx_testing import HELLO, REGISTRY, Cli

import theoryx
from theoryx.pipeline import recorder
from theoryx.store import executions, receipts
from theoryx.store.db import pack
from theoryx.store.handle import open_stores


def blobs(home: Path) -> set[str]:
    return {b.cid for b in open_stores(home).cas.iter_blobs()}


def test_a_hit_writes_no_blob_and_its_receipt_is_derived_on_request(tmp_path: Path) -> None:
    home = tmp_path / "home"
    miss = theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    before = blobs(home)
    hit = theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    assert hit.cache == "hit" and blobs(home) == before       # nothing written for the hit
    rec = executions.get(open_stores(home).db, hit.execution_id)
    assert rec.receipt_cid is None and receipts.derived(rec)
    size = len(pack(rec.to_stored()))
    print(f"a hit's record: {size} bytes on disk (msgpack), no blob")
    assert size <= 1024
    cli = Cli(home, REGISTRY)
    receipt = json.loads(cli("cat", hit.receipt_path).stdout)
    assert receipt["execution_id"] == hit.execution_id and receipt["cache_hit"] is True
    assert receipt["source_execution"] == miss.execution_id
    assert receipt["output_cids"] == {o.path: o.cid for o in miss.outputs}
    index = json.loads(cli("cat", hit.index_path).stdout)
    assert [o["cid"] for o in index["outputs"]] == [o.cid for o in miss.outputs]
    shown = json.loads(cli("show", hit.execution_id, "--json").stdout)
    assert hit.receipt_path in shown["files"]
    out = tmp_path / "export"
    assert cli("export", hit.execution_id, str(out)).exit_code == 0
    assert json.loads((out / "determinism.json").read_text()) == receipt
    exported = cli("receipt", hit.execution_id)
    assert exported.exit_code == 0 and json.loads(exported.stdout) == receipt
    (tmp_path / "r.json").write_text(exported.stdout)
    assert cli("verify-receipt", str(tmp_path / "r.json")).exit_code == 0


def test_derived_receipts_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for _ in range(2):
        hit = theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    rec = executions.get(open_stores(home).db, hit.execution_id)
    cas = open_stores(home).cas
    assert receipts.execution_files(rec, cas) == receipts.execution_files(rec, cas) == receipts.execution_files(rec)


def test_a_batch_commits_hit_records_in_groups(tmp_path: Path, monkeypatch: object) -> None:
    home = tmp_path / "home"
    items = [{"inputs": {"messages": [{"role": "user", "content": str(i)}]}} for i in range(40)]
    commits: list[int] = []
    real = executions.record_many

    def counting(db: object, recordings: list[executions.Recording]) -> None:
        commits.append(len(recordings))
        real(db, recordings)  # type: ignore[arg-type]

    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        assert all(r.ok for r in s.map("llm/litellm@1", items, adapter="mock", jobs=2))
        import pytest

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(executions, "record_many", counting)
            mp.setattr(recorder, "GROUP_AGE_S", 60.0)
            results = list(s.map("llm/litellm@1", items, adapter="mock", jobs=2))
    assert all(r.result is not None and r.result.cache == "hit" for r in results)
    assert sum(commits) == 40 and len(commits) < 40, commits      # grouped, none lost
    db = open_stores(home).db
    assert all(executions.find(db, r.result.execution_id) is not None for r in results if r.result)


def test_a_stored_record_reads_back_as_the_same_record(tmp_path: Path) -> None:
    """``to_stored`` packs the digest fields, outputs' and inputs' cids as raw bytes and leaves
    every other value as it is: reading it back gives the record that was stored, field for field
    (a usage value that looks like a cid stays a string; a malformed digest is stored as given)."""
    from theoryx.store.action_cache import OutputEntry
    from theoryx.store.db import unpack

    cid = "b3:" + "ab" * 32
    rec = executions.ExecutionRecord.begun("01j0000000000000000000000a", "x/y@1", "mock", plan="p", seed=7,
                                           started_ms=5)
    assert rec == executions.ExecutionRecord(execution_id="01j0000000000000000000000a", ref="x/y@1",
                                             adapter="mock", status="error", plan="p", seed=7, started_ms=5)
    rec = rec.with_(status="success", cache="miss", memo_key=cid, action_cid=cid, spec_digest="b3:not-hex",
                    outputs=(OutputEntry("/artifacts/o.txt", cid, 3, "text/plain"),), input_cids=(cid,),
                    usage={"note": cid, "tokens": 3}, error=None, stdout_cid=cid)
    stored = rec.to_stored()
    assert stored["memo_key"] == bytes.fromhex("ab" * 32) and stored["spec_digest"] == "b3:not-hex"
    assert stored["outputs"][0]["cid"] == bytes.fromhex("ab" * 32) and stored["usage"]["note"] == cid
    back = executions.ExecutionRecord.from_dict(unpack(pack(stored)))
    assert back == rec


def test_a_hit_record_is_committed_within_its_age_while_the_caller_pauses(tmp_path: Path) -> None:
    """The caller of Session.map takes one result and pauses: that hit's record is committed by
    the group's age (0.25 s) all the same (it waited for the next result, or the batch's end)."""
    import time

    home = tmp_path / "home"
    items = [{"inputs": {"messages": [{"role": "user", "content": f"m{i}"}]}} for i in range(5)]
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        list(s.map("llm/litellm@1", items, adapter="mock"))
        results = s.map("llm/litellm@1", items, adapter="mock")
        first = next(results)
        assert first.result is not None and first.result.cache == "hit"
        deadline = time.monotonic() + 5
        found = None
        while found is None and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                found = executions.get(open_stores(home).db, first.result.execution_id)
            except Exception:
                found = None
        assert found is not None, "the hit's record waited for the caller"
        results.close()
