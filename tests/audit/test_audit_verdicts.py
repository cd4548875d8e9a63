"""``theoryx audit``: verdicts, exit codes, records, changed processors, sampling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, Cli, hello_args


def textstats(cli: Cli, tmp_path: Path, text: str = "one two two\nthree\n", *extra: str) -> dict[str, Any]:
    f = tmp_path / "data.txt"
    f.write_text(text)
    body = cli.run_json("--adapter", "mock", "--ref", "data/textstats@1", "--inputs-json",
                        json.dumps({"file": {"$attach": "f"}}), "--attach", f"f={f}", *extra)
    assert body["_exit"] == 0, body
    return body


def noise(cli: Cli, ref: str = "test/noise@1") -> dict[str, Any]:
    body = cli.run_json("--adapter", "mock", "--ref", ref)
    assert body["_exit"] == 0, body
    return body


def audit_json(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli("audit", "--json", *args)
    return res.exit_code, json.loads(res.stdout)


def test_deterministic_textstats_audits_reproducible(cli: Cli, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    res = cli("audit", run["execution_id"])
    assert res.exit_code == 0, res.output
    assert "reproducible: all 1 output(s) have the recorded cids" in res.stdout
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 0 and rec["verdict"] == "reproducible" and rec["differences"] == []
    assert rec["memo_key"] == rec["audited_memo_key"] == run["memo_key"]
    assert rec["replay_execution"] and rec["replay_execution"] != run["execution_id"]


def test_litellm_mock_audits_reproducible(cli: Cli) -> None:
    run = cli.run_json(*hello_args())
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 0 and rec["verdict"] == "reproducible" and rec["outputs_compared"] == 2


def test_audit_of_a_cache_hit_reexecutes_and_compares_the_served_outputs(cli: Cli) -> None:
    cli.run_json(*hello_args())
    hit = cli.run_json(*hello_args())
    assert hit["cache"] == "hit"
    code, rec = audit_json(cli, hit["execution_id"])
    assert code == 0 and rec["verdict"] == "reproducible" and rec["execution_id"] == hit["execution_id"]


def test_random_bytes_processor_diverges_naming_each_differing_path(cli: Cli) -> None:
    run = noise(cli)
    res = cli("audit", run["execution_id"])
    assert res.exit_code == 1, res.output
    assert "diverged: 2 of 3 output path(s) differ" in res.stdout
    assert "differs  /artifacts/outputs/noise.bin" in res.stdout
    assert "same.txt" not in res.stdout
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 1 and rec["verdict"] == "diverged"
    diffs = {d["path"]: d for d in rec["differences"]}
    assert sorted(diffs) == ["/artifacts/outputs/noise.bin", "/artifacts/outputs/noise.txt"]
    recorded = {o["path"]: o for o in run["outputs"]}
    binary = diffs["/artifacts/outputs/noise.bin"]
    assert binary["status"] == "differs" and binary["diff"] is None
    assert binary["recorded"]["cid"] == recorded["/artifacts/outputs/noise.bin"]["cid"]
    assert binary["replayed"]["cid"] != binary["recorded"]["cid"]
    assert binary["recorded"]["size_bytes"] == binary["replayed"]["size_bytes"] == 32
    text = diffs["/artifacts/outputs/noise.txt"]["diff"]
    assert text.startswith("--- recorded/artifacts/outputs/noise.txt\n+++ replayed/artifacts/outputs/noise.txt")
    body = text.splitlines()[3:]
    assert body[0] == " fixed line" and [ln[0] for ln in body[1:]] == ["-", "+"]


def test_stochastic_processor_is_reported_as_stochastic_not_as_a_failure(cli: Cli) -> None:
    run = noise(cli, "test/dice@1")
    res = cli("audit", run["execution_id"])
    assert res.exit_code == 0, res.output
    assert "stochastic: test/dice@1 is declared stochastic" in res.stdout
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 0 and rec["verdict"] == "stochastic" and rec["stochastic"] is True
    assert len(rec["differences"]) == 2


def test_a_failing_reexecution_is_diverged(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    run = noise(cli)
    monkeypatch.setenv("NOISE_FAIL", "1")
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 1 and rec["verdict"] == "diverged"
    assert "ERR_PROCESSOR_FAILED" in rec["reason"] and rec["replay_execution"]


def test_audit_leaves_the_cache_entry_and_world_paths_alone(cli: Cli, home: Path) -> None:
    run = noise(cli)
    before = cli("cat", "/artifacts/outputs/noise.bin").stdout_bytes
    assert cli("audit", run["execution_id"]).exit_code == 1
    assert cli("cat", "/artifacts/outputs/noise.bin").stdout_bytes == before
    again = noise(cli)
    assert again["cache"] == "hit" and again["outputs"] == run["outputs"]
    from theoryx.store import action_cache
    from theoryx.store.handle import open_stores

    entry = action_cache.get(open_stores(home).db, run["memo_key"])
    assert entry is not None and entry.execution_id == run["execution_id"]


def test_show_lists_the_audit_records_of_an_execution(cli: Cli, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    cli("audit", run["execution_id"])
    cli("audit", run["execution_id"], "--adapter", "local")
    human = cli("show", run["execution_id"]).stdout
    lines = [ln for ln in human.splitlines() if ln.strip().startswith("audit:")]
    assert len(lines) == 2
    assert "reproducible on mock (replay " in lines[0] and "unauditable on local" in lines[1]
    js = json.loads(cli("show", "--json", run["execution_id"]).stdout)
    assert [a["verdict"] for a in js["audits"]] == ["reproducible", "unauditable"]


def test_a_changed_spec_field_stops_the_audit_saying_what_changed(cli: Cli, registry: Path, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    spec = registry / "processors" / "data" / "textstats@1.yaml"
    spec.write_text(spec.read_text().replace("timeout: 60", "timeout: 61"))
    res = cli("audit", run["execution_id"])
    assert res.exit_code == 2, res.output
    assert "spec field runtime.timeout: 60 -> 61" in res.stdout
    assert "the processor changed since execution" in res.stdout and "--current" in res.stdout
    code, rec = audit_json(cli, run["execution_id"], "--current")
    assert code == 0 and rec["verdict"] == "reproducible"
    assert rec["audited_memo_key"] != rec["memo_key"]
    assert [c["where"] for c in rec["changes"]] == ["runtime.timeout"]
    human = cli("audit", run["execution_id"], "--current").stdout
    assert "memo key differs" in human


def test_a_changed_context_file_stops_the_audit_naming_the_file(cli: Cli, registry: Path, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    mock = registry / "processors" / "data" / "textstats" / "mock.py"
    mock.write_text(mock.read_text() + "\n# edited\n")
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 2 and rec["verdict"] == "unauditable"
    assert [(c["kind"], c["where"]) for c in rec["changes"]] == [("context", "mock.py")]


def test_a_mock_execution_on_local_is_a_different_action(cli: Cli, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    code, rec = audit_json(cli, run["execution_id"], "--adapter", "local")
    assert code == 2 and rec["verdict"] == "unauditable"
    assert "ran in the mock environment class" in rec["reason"] and "different action" in rec["reason"]
    assert ("env", "class") in [(c["kind"], c["where"]) for c in rec["changes"]]
    assert rec["replay_execution"] is None


def test_unknown_or_failed_executions_cannot_be_audited(cli: Cli) -> None:
    """The command's own errors (no such execution, one that failed, a malformed --ref) are
    every command's envelope and "Error:" line, with exit 2 (could not audit)."""
    cli.run_json(*hello_args())                         # a home to look in
    res = cli("audit", "nonexistent00")
    assert res.exit_code == 2 and res.stderr.startswith("Error: ") and "nonexistent00" in res.stderr
    bad = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", "{}")
    assert bad["status"] == "error"
    code, body = audit_json(cli, bad["execution_id"])
    assert code == 2 and body["status"] == "error" and "did not succeed" in body["error"]["message"]
    assert set(body) == {"status", "execution_id", "error"}
    res = cli("audit", "--sample", "1", "--ref", "bad", "--json")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "ERR_REF"


def test_an_attachment_gone_from_the_store_makes_the_audit_impossible(cli: Cli, home: Path, tmp_path: Path) -> None:
    run = textstats(cli, tmp_path)
    from theoryx.store.handle import open_stores

    cas = open_stores(home).cas
    cid = json.loads(cli("show", "--json", run["execution_id"]).stdout)["input_cids"][0]
    assert cas.delete(cid)
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 2 and "data.txt" in rec["reason"] and "no longer in the store" in rec["reason"]


def test_usage_errors(cli: Cli) -> None:
    assert cli("audit").exit_code == 2
    assert cli("audit", "x", "--sample", "2").exit_code == 2
    assert cli("audit", "x", "--ref", "a/b@1").exit_code == 2


def test_sample_audits_random_cached_entries_and_summarises(cli: Cli, tmp_path: Path) -> None:
    textstats(cli, tmp_path)
    cli.run_json(*hello_args())
    noise(cli)
    noise(cli, "test/dice@1")
    res = cli("audit", "--sample", "10")
    assert res.exit_code == 1, res.output
    assert "Audited 4 cached entries: 2 reproducible, 1 diverged, 1 stochastic" in res.stdout
    one = cli("audit", "--sample", "5", "--ref", "data/textstats@1", "--json")
    body = json.loads(one.stdout)
    assert one.exit_code == 0 and body["audited"] == 1 and body["counts"] == {"reproducible": 1}
    picked = json.loads(cli("audit", "--sample", "1", "--json").stdout)
    assert picked["audited"] == 1
    assert cli("audit", "--sample", "3", "--ref", "x/none@1").stdout.startswith("No cached entries")


def test_audit_records_survive_and_list_in_order(cli: Cli, home: Path) -> None:
    run = cli.run_json(*hello_args())
    for _ in range(3):
        cli("audit", run["execution_id"])
    from theoryx.provenance import audit_records as audits
    from theoryx.store.handle import open_stores

    recs = audits.for_execution(open_stores(home).db, run["execution_id"])
    assert len(recs) == 3 and [r.audit_id for r in recs] == sorted(r.audit_id for r in recs)
    assert all(r.verdict == "reproducible" and r.ref == "llm/litellm@1" for r in recs)
    assert HELLO  # the shared inputs are what the run used


@pytest.mark.parametrize("args", [["--plan", "bad key"], ["--plan", "team\n"], ["--registry", "{tmp}/nowhere"]],
                         ids=["malformed plan key", "plan key with a newline", "registry typo"])
@pytest.mark.parametrize("sample", [False, True], ids=["one", "sample"])
def test_a_setup_mistake_is_the_audit_s_error_and_records_nothing(cli: Cli, tmp_path: Path, args: list[str],
                                                                   sample: bool) -> None:
    from theoryx.store.handle import open_stores

    run = cli.run_json(*hello_args())
    db = open_stores(cli.home).db
    before = (db.count("executions"), db.count("audits"))
    opts = [a.replace("{tmp}", str(tmp_path)) for a in args]
    group = opts[:2] if opts[0] == "--registry" else []
    rest = [] if group else opts
    target = ["--sample", "2"] if sample else [run["execution_id"]]
    res = cli(*group, "audit", *target, *rest, "--json")
    assert res.exit_code == 2, res.output
    assert (db.count("executions"), db.count("audits")) == before
    assert "re-executed" not in res.output


def test_the_receipt_of_a_replay_gc_removed_is_not_found_not_a_crash(cli: Cli) -> None:
    """An audit's replay is no live result, so gc removes its receipt: `receipt` said ERR_INTERNAL
    (BlobNotFound) and wrote a crash file."""
    run = cli.run_json(*hello_args())
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 0, rec
    assert cli("gc", "--grace", "0").exit_code == 0
    res = cli("receipt", rec["replay_execution"])
    assert res.exit_code == 1 and res.stdout == "", res.output
    assert "no longer in the store (removed by gc)" in res.stderr and "internal error" not in res.stderr


def test_an_audit_its_plan_refuses_says_nothing_was_re_executed(cli: Cli) -> None:
    """On an exhausted plan the replay is refused before it executes: unauditable, exit 2, and the
    report no longer says "re-executed as"."""
    run = cli.run_json(*hello_args())
    assert cli("plan", "create", "tight", "--limit-usd", "0").exit_code == 0
    res = cli("audit", run["execution_id"], "--plan", "tight")
    assert res.exit_code == 2, res.output
    assert "re-executed" not in res.stdout and "was refused before it executed" in res.stdout, res.stdout
    assert "could not audit: ERR_BUDGET_EXCEEDED" in res.stdout


def test_declaring_a_processor_stochastic_afterwards_does_not_excuse_a_divergence(cli: Cli, registry: Path) -> None:
    """`stochastic` was judged from the spec as it is now and was not in the key: adding it after
    a deterministic execution turned that execution's diverging audit into a pass (exit 0). It is
    in the key now (when true), and the verdict follows the recorded action."""
    run = noise(cli)
    assert audit_json(cli, run["execution_id"])[1]["verdict"] == "diverged"
    spec = registry / "processors" / "test" / "noise@1.yaml"
    spec.write_text(spec.read_text() + "stochastic: true\n")
    code, rec = audit_json(cli, run["execution_id"])
    assert code == 2 and rec["verdict"] == "unauditable" and "stochastic" in rec["reason"], rec
    code, rec = audit_json(cli, run["execution_id"], "--current")
    assert code == 1 and rec["verdict"] == "diverged" and rec["stochastic"] is False, rec
    again = noise(cli)
    assert again["memo_key"] != run["memo_key"] and again["cache"] == "miss"   # a new action
    code, rec = audit_json(cli, again["execution_id"])
    assert code == 0 and rec["verdict"] == "stochastic", rec


def test_ctrl_c_during_audit_json_still_prints_one_envelope(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any command under --json, stopped by Ctrl-C: one ERR_INTERRUPTED envelope on stdout and
    exit 130, as `run --json` does (before: nothing on stdout, "Aborted!")."""
    from theoryx.pipeline.session import Session

    run = cli.run_json(*hello_args())

    def interrupted(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "replay", interrupted)
    res = cli("audit", "--json", run["execution_id"])
    assert res.exit_code == 130
    body = json.loads(res.stdout)
    assert body["status"] == "error" and body["error"]["code"] == "ERR_INTERRUPTED"
    assert "Aborted!" in res.stderr
