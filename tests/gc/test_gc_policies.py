"""--max-age, --max-size and pins: what goes first, what a hit saves, what a pin keeps."""

from __future__ import annotations

import time
from pathlib import Path

from gc_support import HOUR, age, blob_files, gc_json, live_cids, run, stores
from theoryx_testing import Cli

import theoryx
from theoryx.store import action_cache, executions


def backdate(home: Path, result: theoryx.RunResult, hours: float) -> None:
    """Pretend ``result`` ran, and its cache entry was last used, ``hours`` ago."""
    db = stores(home).db
    then = int((time.time() - hours * HOUR) * 1000)
    entry = action_cache.get(db, result.memo_key)
    if entry is not None and entry.execution_id == result.execution_id:
        action_cache.put(db, entry.used_at(then))
    rec = executions.get(db, result.execution_id)
    executions.record(db, rec.with_(started_ms=then))


def test_max_age_drops_unused_entries_and_records_first_but_keeps_pins(home: Path, cli: Cli) -> None:
    old, recent, pinned = run(home, "old"), run(home, "recent"), run(home, "pinned")
    for result in (old, pinned):
        backdate(home, result, 3)
    assert cli("pin", pinned.execution_id).exit_code == 0
    age(home)

    body = gc_json(cli, "--max-age", "2h")

    db = stores(home).db
    assert body["cache_entries"] == {"before": 3, "evicted_by_age": 1, "evicted_by_size": 0}
    assert body["executions"] == {"before": 3, "dropped": 1}
    assert action_cache.get(db, old.memo_key) is None
    assert db.get("executions", old.execution_id) is None
    held = db.get("paths", old.outputs[0].path)
    assert held is None or held["execution_id"] != old.execution_id
    present = set(blob_files(home))
    assert live_cids(recent) <= present and live_cids(pinned) <= present
    assert not {old.record.receipt_cid, old.record.action_cid} & present
    assert run(home, "old").cache == "miss"
    assert run(home, "pinned").cache == "hit" and run(home, "recent").cache == "hit"


def test_a_hit_refreshes_its_entry_so_max_age_keeps_it(home: Path, cli: Cli) -> None:
    first = run(home)
    backdate(home, first, 3)
    age(home)
    assert run(home).cache == "hit"
    body = gc_json(cli, "--max-age", "2h")
    assert body["cache_entries"]["evicted_by_age"] == 0
    assert body["executions"]["dropped"] == 0, "the producer of a kept entry stays"
    assert run(home).cache == "hit"


def test_max_size_evicts_least_recently_used_entries_until_the_store_fits(home: Path, cli: Cli) -> None:
    results = [run(home, word) for word in ("lru", "middle", "newest")]
    for hours, result in zip((3, 2, 1), results, strict=True):
        backdate(home, result, hours)
    age(home)
    total = sum(p.stat().st_size for p in blob_files(home).values())

    body = gc_json(cli, "--max-size", str(total - 1))

    assert body["cache_entries"]["evicted_by_size"] == 1 and body["fits"] is True
    db = stores(home).db
    assert action_cache.get(db, results[0].memo_key) is None
    assert all(action_cache.get(db, r.memo_key) is not None for r in results[1:])
    assert sum(p.stat().st_size for p in blob_files(home).values()) <= total - 1
    assert [run(home, w).cache for w in ("lru", "middle", "newest")] == ["miss", "hit", "hit"]


def test_max_size_below_what_pins_hold_evicts_the_rest_and_says_it_does_not_fit(home: Path, cli: Cli) -> None:
    kept, other = run(home, "kept"), run(home, "other")
    assert cli("pin", kept.execution_id).exit_code == 0
    age(home)
    body = gc_json(cli, "--max-size", "1")
    assert body["fits"] is False and body["cache_entries"]["evicted_by_size"] == 1
    present = set(blob_files(home))
    assert live_cids(kept) <= present
    assert not {other.record.receipt_cid, other.record.action_cid} & present
    assert "above" in cli("gc", "--max-size", "1").stdout


def test_pins_protect_until_unpinned(home: Path, cli: Cli) -> None:
    result = run(home)
    action_cache.delete(stores(home).db, result.memo_key)
    age(home)
    assert cli("pin", result.execution_id[:10], "--note", "paper figure 3").exit_code == 0
    gc_json(cli)
    assert live_cids(result) <= set(blob_files(home))
    assert result.execution_id in cli("pins").stdout and "paper figure 3" in cli("pins").stdout
    assert cli("unpin", result.execution_id).exit_code == 0
    assert cli("pins").stdout.strip() == "No pinned executions."
    body = gc_json(cli)
    assert body["reclaimed"]["count"] >= len(live_cids(result) - {result.record.action_cid})
    assert not live_cids(result) & set(blob_files(home))


def test_pinning_again_keeps_the_time_and_takes_a_new_note_and_a_bad_note_is_refused(home: Path, cli: Cli) -> None:
    result = run(home)
    assert cli("pin", result.execution_id, "--note", "first").exit_code == 0
    first = cli("pins").stdout
    assert cli("pin", result.execution_id, "--note", "second").exit_code == 0
    assert cli("pin", result.execution_id).exit_code == 0          # no note: the note stays
    again = cli("pins").stdout
    assert "second" in again and "first" not in again
    assert again.replace("second", "first") == first                # the pinned time is kept
    for bad in ("a\udcffb", "two\nlines"):                          # \udcff: a byte that was not UTF-8 in argv
        res = cli("pin", result.execution_id, "--note", bad)
        assert res.exit_code == 2 and "--note must be printable UTF-8 text" in res.stderr
    assert "second" in cli("pins").stdout
