"""The store commands' faces: du, stats, pins, option parsing, human output, durations and sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gc_support import garbage, run
from theoryx_testing import Cli

from theoryx.core.durations import human_bytes, human_duration, parse_duration, parse_size
from theoryx.errors import UsageError


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800),
                                               ("1w", 604800), ("45", 45), ("1.5h", 5400), (" 2H ", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("512", 512), ("500K", 500 << 10), ("500M", 500 << 20),
                                            ("2G", 2 << 30), ("2GiB", 2 << 30), ("1tb", 1 << 40), ("1.5k", 1536)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_size_too_large_for_a_number_is_a_usage_error() -> None:
    for text in ("9" * 5000, "99999999999999999999999999T", "1024P"):
        with pytest.raises(UsageError, match="too large a size"):
            parse_size(text)
    assert parse_size("1023P") == 1023 << 50


@pytest.mark.parametrize("bad", ["", "soon", "-1h", "1y", "h"])
def test_bad_durations_and_sizes_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(bad)
    with pytest.raises(UsageError):
        parse_size(bad.replace("h", "x"))


def test_a_duration_too_long_for_a_number_is_a_usage_error(cli: Cli) -> None:
    # float("9" * 400) is infinity: gc took it and printed "grace_s": Infinity (no JSON) and
    # "younger than infd"
    for text in ("9" * 400, "9" * 307 + "d", "9" * 5000 + "s"):
        with pytest.raises(UsageError, match="too long a duration"):
            parse_duration(text)
    assert parse_duration("9" * 300) == float("9" * 300)
    cli("plan", "create", "p")                 # a home to look at
    for option in ("--grace", "--max-age"):
        res = cli("gc", "--dry-run", "--json", option, "9" * 400)
        assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "ERR_USAGE"


def test_humans() -> None:
    assert (human_bytes(512), human_bytes(1536), human_bytes(5 << 30)) == ("512 B", "1.5 KiB", "5.0 GiB")
    assert (human_duration(3600), human_duration(5400), human_duration(30)) == ("1h", "1.5h", "30s")


def test_bad_option_values_exit_2(cli: Cli) -> None:
    for args in (["--max-age", "soon"], ["--max-size", "lots"], ["--grace", "x"]):
        res = cli("gc", *args)
        assert res.exit_code == 2, args
        assert res.stderr.startswith("Error: ")


def test_stats_show_hit_rate_and_money_saved_by_hits(home: Path, cli: Cli) -> None:
    run(home, adapter_options={"cost_usd": 0.25})
    run(home)
    run(home)
    run(home, "other")
    body = json.loads(cli("stats", "--json").stdout)
    assert body["executions"] == {"total": 4, "hits": 2, "misses": 2, "bypassed": 0, "failures": 0}
    assert body["hit_rate"] == 0.5
    assert body["saved_micros"] == 500_000
    assert body["cache_entries"] == 2
    human = cli("stats").stdout
    assert "hit rate       50.0%" in human and "saved by hits  $0.500000" in human


def test_du_counts_blobs_and_bytes(home: Path, cli: Cli) -> None:
    run(home)
    junk = garbage(home, 3)
    body = json.loads(cli("du", "--json").stdout)
    files = [p for p in (home / "cas-v1" / "blobs").glob("*/*")]
    assert body["blobs"] == {"count": len(files), "bytes": sum(p.stat().st_size for p in files)}
    assert len(files) >= 3 + len(junk)
    assert body["database_bytes"] > 0 and body["total_bytes"] >= body["blobs"]["bytes"]
    assert "blobs" in cli("du").stdout


def test_pin_errors(home: Path, cli: Cli) -> None:
    result = run(home)
    res = cli("pin", "nosuchexecution")
    assert res.exit_code == 1 and "no execution" in res.stderr
    res = cli("unpin", result.execution_id)
    assert res.exit_code == 1 and "not pinned" in res.stderr
    assert cli("pin", result.execution_id).exit_code == 0
    assert cli("pin", result.execution_id).exit_code == 0, "pinning twice is fine"
    pins = json.loads(cli("pins", "--json").stdout)
    assert [p["execution_id"] for p in pins] == [result.execution_id]


def test_gc_speaks_plainly_and_draws_no_bar_off_a_terminal(home: Path, cli: Cli) -> None:
    run(home)
    garbage(home, 2)
    res = cli("gc", "--dry-run", "--grace", "0")
    assert res.exit_code == 0 and res.stderr == ""
    first = res.stdout.splitlines()[0]
    assert first.startswith("gc (dry run: nothing was deleted): examined ")
    assert "would reclaim 2 blobs" in first
    aged = cli("gc", "--dry-run", "--grace", "0", "--max-age", "0s", "--max-size", "0").stdout
    assert ", would evict " in aged and ", would drop " in aged and "evicted" not in aged and "dropped" not in aged
    done = cli("gc", "--grace", "0", "--max-age", "0s", "--max-size", "0").stdout
    assert ", evicted " in done and ", dropped " in done and "would" not in done
