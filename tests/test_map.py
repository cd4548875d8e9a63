"""``theoryx map`` and ``Session.map``: every item its own cached action, in order, under budgets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import COSTLY, COSTLY_REF, REGISTRY, REPO

import theoryx
from theoryx.store import executions
from theoryx.store.handle import open_stores


def msg(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def write_items(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def tmap(home: Path, *args: str, registry: Path = REGISTRY, timeout: float = 300,
         **popen: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry))
    popen.setdefault("cwd", REPO)
    return subprocess.run([sys.executable, "-m", "theoryx", "map", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **popen)


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_each_item_is_a_run_with_its_line_its_id_and_the_run_envelope(tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", [
        {"inputs": msg("a"), "id": "first"}, {"inputs": msg("b")}, "not json", {"inputs": msg("c"), "extra": 1},
        {"inputs": msg("a"), "id": "again"}])
    home = tmp_path / "home"
    proc = tmap(home, "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--jobs", "3")
    assert proc.returncode == 1, proc.stderr
    out = lines(proc.stdout)
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5]
    assert [o["id"] for o in out] == ["first", None, None, None, "again"]
    assert [o["status"] for o in out] == ["success", "success", "error", "error", "success"]
    assert out[2]["error"]["code"] == "ERR_INPUTS" and out[2]["error"]["message"].startswith("line 3: ")
    assert "unknown key" in out[3]["error"]["message"]
    assert out[0]["memo_key"] == out[4]["memo_key"]
    assert sorted([out[0]["cache"], out[4]["cache"]]) == ["hit", "miss"]  # identical items: one execution
    # exactly what `run --json` prints for the same inputs (ids and timings aside)
    single = subprocess.run([sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref",
                             "llm/litellm@1", "--inputs-json", json.dumps(msg("b"))], cwd=REPO, text=True,
                            capture_output=True, env=dict(os.environ, THEORYX_HOME=str(home),
                                                          THEORYX_REGISTRY=str(REGISTRY)), check=True)
    one = json.loads(single.stdout)
    drop = {"execution_id", "index_path", "receipt_path", "meta", "cache", "cost_micros", "saved_micros"}
    assert {k: v for k, v in out[1].items() if k not in drop | {"line", "id"}} == \
        {k: v for k, v in one.items() if k not in drop}
    assert set(out[1]) - {"line", "id"} == set(one)
    assert "5 items: 1 hits, 2 misses, 2 failed" in proc.stderr


def test_rerunning_a_batch_is_all_hits_and_out_is_written_whole(tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", [{"inputs": msg(str(i))} for i in range(20)])
    home, out = tmp_path / "home", tmp_path / "res" / "out.jsonl"
    first = tmap(home, "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--out", str(out))
    assert first.returncode == 0 and first.stdout == ""
    assert [r["cache"] for r in lines(out.read_text())] == ["miss"] * 20
    again = tmap(home, "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--out", str(out),
                 "--quiet")
    assert again.returncode == 0 and again.stderr == ""
    assert [r["cache"] for r in lines(out.read_text())] == ["hit"] * 20
    assert list(out.parent.iterdir()) == [out]  # no temp file left beside it


def test_unordered_yields_every_item_once(tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", [{"inputs": msg(str(i)), "id": str(i)} for i in range(12)])
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--unordered",
                "--jobs", "4")
    assert proc.returncode == 0
    assert sorted(int(o["id"]) for o in lines(proc.stdout)) == list(range(12))


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path) -> None:
    rows: list[Any] = ["broken"] + [{"inputs": msg(str(i))} for i in range(50)]
    items = write_items(tmp_path / "items.jsonl", rows)
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--fail-fast",
                "--jobs", "1")
    assert proc.returncode == 1
    assert len(lines(proc.stdout)) < 51


@pytest.mark.parametrize("jobs", [1, 2])
def test_fail_fast_executes_nothing_after_the_first_failure(tmp_path: Path, jobs: int) -> None:
    # Every item fails when executed; a pool thread that is free once the first has failed must
    # not start a queued item (each would be a paid call): jobs 1 executes exactly one item, jobs N
    # at most the N already running.
    items = [{"inputs": msg(str(i))} for i in range(40)]
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        results = list(s.map("llm/litellm@1", items, jobs=jobs, fail_fast=True, adapter="mock",
                             adapter_options={"exit_code": 3}))
    assert results and all(not r.ok for r in results)
    executed = list(executions.latest(open_stores(tmp_path / "home").db))
    assert len(executed) == len(results)
    assert len(results) == 1 if jobs == 1 else 1 <= len(results) <= jobs


@pytest.mark.parametrize("options, code", [
    ({"ref": "llm/litelm@1"}, "ERR_PROCESSOR_NOT_FOUND"),
    ({"seed": 2**53}, "ERR_USAGE"),
    ({"plan": ""}, "ERR_PLAN_KEY"),
    ({"adapter_options": {"exit_code": 300}}, "ERR_ADAPTER_OPTIONS"),
], ids=["ref", "seed", "plan key", "adapter options"])
def test_a_mistake_every_item_shares_fails_the_batch_once_before_any_item(
        tmp_path: Path, options: dict[str, Any], code: str) -> None:
    from theoryx.errors import TheoryxError

    ref = options.pop("ref", "llm/litellm@1")
    items = [{"inputs": msg(str(i))} for i in range(50)]
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        with pytest.raises(TheoryxError) as raised:
            list(s.map(ref, items, adapter="mock", **options))
    assert raised.value.code == code
    assert list(executions.latest(open_stores(tmp_path / "home").db)) == []


def test_a_misspelt_ref_fails_map_once_and_leaves_out_alone(tmp_path: Path) -> None:
    items = write_items(tmp_path / "items.jsonl", [{"inputs": msg(str(i))} for i in range(30)])
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n")
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litelm@1", "--items", str(items), "--out", str(out))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("Error: processor llm/litelm@1 not found") and proc.stderr.count("\n") == 1
    assert out.read_text() == "kept\n"


def test_items_with_a_nameless_or_unhashable_attachment_or_an_object_id_fail_alone(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    os.mkfifo(tmp_path / "fifo")
    content = [{"$attach": "x"}]
    items = write_items(tmp_path / "items.jsonl", [
        {"inputs": {"messages": [{"role": "user", "content": [{"$attach": ""}]}]}, "attach": {"": "a.txt"}},
        {"inputs": {"messages": [{"role": "user", "content": content}]}, "attach": {"x": "fifo"}},
        {"inputs": msg("a"), "id": {"nested": 1}},
        {"inputs": msg("a"), "id": 7},
        {"inputs": msg("b"), "attach": []},     # not a mapping (it was taken for none)
        {"inputs": msg("c"), "attach": None},   # null: none
    ])
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--quiet")
    out = lines(proc.stdout)
    assert proc.returncode == 1
    assert [(o["line"], o["status"], (o.get("error") or {}).get("code")) for o in out] == [
        (1, "error", "ERR_ATTACHMENT"), (2, "error", "ERR_ATTACHMENT"), (3, "error", "ERR_INPUTS"),
        (4, "success", None), (5, "error", "ERR_INPUTS"), (6, "success", None)]
    assert "needs a name" in out[0]["error"]["message"]
    assert "is not a regular file" in out[1]["error"]["message"]
    assert out[2]["error"]["message"] == 'line 3: "id" is a label: a string or a number' and out[3]["id"] == "7"


def test_a_source_with_nothing_yet_yields_none_and_finished_misses_are_reported_meanwhile(tmp_path: Path) -> None:
    seen: list[Any] = []

    def slow_source() -> Any:
        yield {"inputs": msg("first")}
        for _ in range(400):             # up to ~20 s: the first miss must be reported before the next item
            if seen:
                break
            yield None
        else:
            raise AssertionError("the finished miss was held back until another item arrived")
        yield None
        yield {"inputs": msg("second")}

    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        for r in s.map("llm/litellm@1", slow_source(), jobs=1, adapter="mock"):
            seen.append(r)
    assert [(r.item.line, r.ok) for r in seen] == [(1, True), (2, True)]


def test_attach_paths_are_relative_to_the_items_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("hello")
    items = write_items(tmp_path / "items.jsonl", [
        {"inputs": {"messages": [{"role": "user", "content": [{"$attach": "doc"}]}]}, "attach": {"doc": "docs/a.txt"}}])
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items),
                cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_unreferenced_attachment_is_reported_once_per_batch_and_counted(tmp_path: Path) -> None:
    """Six items each attaching a file their inputs never reference: one warning per item (50
    items, 50 identical lines). Now the first, then one line counting the rest; a missing
    reference names both ways of giving an attachment (it said `--attach` in map too)."""
    (tmp_path / "a.txt").write_text("hello")
    rows: list[Any] = [{"inputs": msg(f"m{i}"), "attach": {"unused": "a.txt"}} for i in range(6)]
    rows.append({"inputs": {"messages": [{"role": "user", "content": [{"$attach": "doc"}]}]}})
    items = write_items(tmp_path / "items.jsonl", rows)
    proc = tmap(tmp_path / "h", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items), "--quiet")
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == ["Warning: attachment 'unused' is not referenced by the inputs (use {\"$attach\": \"unused\"}); "
                        "it is not passed to the processor",
                        "Warning: 5 more attachments not referenced by their inputs (the first is reported above)"], \
        proc.stderr
    last = lines(proc.stdout)[-1]
    assert proc.returncode == 1 and last["error"]["code"] == "ERR_ATTACHMENT"
    assert '"attach": {"doc": "PATH"}' in last["error"]["message"], last


def test_budget_admits_misses_one_by_one_and_hits_still_answer(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    (registry / "processors" / "test").mkdir(parents=True)
    (registry / "processors" / "test" / "costly@1.yaml").write_text(COSTLY)
    home = tmp_path / "home"
    cached = theoryx.run(COSTLY_REF, inputs={"i": 0}, adapter="mock", home=home, registry=str(registry),
                         adapter_options={"cost_usd": 0.25})
    subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), "plan", "create", "p", "--limit-usd", "1"],
                   cwd=REPO, check=True, capture_output=True)
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": i}} for i in range(10)])
    proc = tmap(home, "--adapter", "mock", "--ref", COSTLY_REF, "--items", str(items), "--plan", "p", "--jobs", "4",
                "--adapter-opts-json", '{"cost_usd": 0.25}', registry=registry)
    out = lines(proc.stdout)
    assert proc.returncode == 1
    assert out[0]["cache"] == "hit" and out[0]["memo_key"] == cached.memo_key
    misses = [o for o in out if o["status"] == "success" and o["cache"] == "miss"]
    refused = [o for o in out if o["status"] == "error"]
    assert len(misses) == 4 and all(o["error"]["code"] == "ERR_BUDGET_EXCEEDED" for o in refused)
    assert len(refused) == 5
    show = subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), "plan", "show", "p", "--json"],
                          cwd=REPO, check=True, capture_output=True, text=True)
    plan = json.loads(show.stdout)
    assert plan["spent_micros"] == 1_000_000 and plan["reserved_micros"] == 0


def test_session_map_in_python_in_order_and_as_completed(tmp_path: Path) -> None:
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        ordered = list(s.map("llm/litellm@1", [{"inputs": msg(str(i)), "id": i} for i in range(8)], adapter="mock",
                             jobs=3))
        assert [r.item.id for r in ordered] == [str(i) for i in range(8)]
        assert all(r.ok and r.result is not None and r.result.cache == "miss" for r in ordered)
        again = list(s.map("llm/litellm@1", ({"inputs": msg(str(i))} for i in range(8)), adapter="mock",
                           ordered=False, jobs=2))
        assert sorted(r.item.line for r in again) == list(range(1, 9))
        assert {r.result.cache for r in again if r.result} == {"hit"}
    assert len(list(executions.latest(open_stores(tmp_path / "home").db))) == 16


@pytest.mark.parametrize("option", ["inputs", "attachments"])
def test_session_map_refuses_inputs_or_attachments_as_options_for_all_items(tmp_path: Path, option: str) -> None:
    """They are each item's own: as options they were silently replaced by every item's (an
    ``attachments={"doc": ...}`` meant for all items was never attached: the items failed
    ERR_ATTACHMENT "no --attach doc=PATH")."""
    doc = tmp_path / "doc.txt"
    doc.write_text("shared\n")
    value: Any = {"doc": str(doc)} if option == "attachments" else msg("for all")
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        with pytest.raises(theoryx.errors.UsageError, match=f"map\\(\\) takes {option} from each item"):
            list(s.map("llm/litellm@1", [{"inputs": msg("a")}], adapter="mock", **{option: value}))
    assert not (tmp_path / "home").exists() or not list(executions.latest(open_stores(tmp_path / "home").db))


@pytest.mark.parametrize("items", [None, 5, "abc", b"abc", {"inputs": {"messages": []}}])
def test_session_map_refuses_items_that_are_no_iterable_of_items_when_called(tmp_path: Path, items: Any) -> None:
    """None or an int raised TypeError only at the first next(); one mapping or a string made every
    key or character an item failing on its own."""
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        with pytest.raises(theoryx.errors.UsageError, match="items must be an iterable of items") as info:
            s.map("llm/litellm@1", items, adapter="mock")
        assert info.value.code == "ERR_USAGE"
        assert list(s.map("llm/litellm@1", iter([]), adapter="mock")) == []


@pytest.mark.parametrize(("kw", "says"), [({"ordered": "no"}, "ordered must be True or False"),
                                          ({"fail_fast": 1}, "fail_fast must be True or False"),
                                          ({"batch": ()}, "batch must be a list")])
def test_session_map_refuses_flags_that_are_not_bools_and_a_batch_that_is_no_list(
        tmp_path: Path, kw: dict[str, Any], says: str) -> None:
    """ordered="no" was taken as true (results in order), fail_fast=1 too; batch=() raised
    AttributeError at the first next()."""
    with theoryx.Session(tmp_path / "home", registry=str(REGISTRY)) as s:
        with pytest.raises(theoryx.errors.UsageError, match=says) as info:
            s.map("llm/litellm@1", [{"inputs": msg("a")}], adapter="mock", **kw)
        assert info.value.code == "ERR_USAGE"


SLOW_MOCK = """\
import time

def run(inputs, outdir, ctx):
    time.sleep(0.3)
    (outdir / "out.txt").write_text(str(inputs.get("i")))
    return {}
"""
SLOW_SPEC = """\
ref: test/slowish@1
description: Sleeps 0.3 s.
image:
  ref: example.invalid/slowish@sha256:{zeros}
runtime: {{timeout: 60}}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""


def slow_registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    (root / "processors" / "test" / "slowish").mkdir(parents=True)
    (root / "processors" / "test" / "slowish@1.yaml").write_text(SLOW_SPEC.format(zeros="0" * 64))
    (root / "processors" / "test" / "slowish" / "mock.py").write_text(SLOW_MOCK)
    return root


@pytest.mark.slow
def test_a_second_ctrl_c_still_reports_the_items_that_finished_in_flight(tmp_path: Path) -> None:
    """Two Ctrl-C while two in-process (mock) items run: they cannot be stopped, so they finish
    and are recorded (and charged), but their lines and charges were missing: "0 items", $0
    spent. Now each recorded success has its line and is in the summary."""
    registry, home = slow_registry(tmp_path), tmp_path / "home"
    mock = registry / "processors" / "test" / "slowish" / "mock.py"
    mock.write_text(mock.read_text().replace("time.sleep(0.3)", "time.sleep(2.5)"))
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": i}} for i in range(6)])
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "test/slowish@1",
                             "--items", str(items), "--jobs", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)               # two items in flight, none finished
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    recorded = json.loads(subprocess.run([sys.executable, "-m", "theoryx", "ls", "--json"], env=env, cwd=REPO,
                                         capture_output=True, text=True, check=True).stdout)
    succeeded = sorted(r["execution_id"] for r in recorded if r["status"] == "success")
    reported = sorted(o["execution_id"] for o in lines(out) if o["status"] == "success")
    print(f"recorded {len(succeeded)} successes, reported {len(reported)}; {err.strip().splitlines()[-1]}")
    assert succeeded and reported == succeeded, (succeeded, out)
    assert f"interrupted: {len(lines(out))} items" in err, err


def test_ctrl_c_before_any_result_leaves_out_as_it_was(tmp_path: Path) -> None:
    """`map --items - --out results.jsonl` reading a pipe that has sent nothing yet, then Ctrl-C:
    results.jsonl (a previous batch's results) was replaced by an empty file."""
    out = tmp_path / "results.jsonl"
    out.write_text('{"line": 1, "earlier": true}\n')
    env = dict(os.environ, THEORYX_HOME=str(tmp_path / "home"), THEORYX_REGISTRY=str(REGISTRY))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "llm/litellm@1",
                             "--items", "-", "--out", str(out)], env=env, cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)           # started and waiting for its first line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted: 0 items" in err, err
    assert out.read_text() == '{"line": 1, "earlier": true}\n'
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] == ["results.jsonl"], "a temp file was left"


@pytest.mark.slow
def test_ctrl_c_records_what_finished_prints_the_summary_and_a_rerun_resumes(tmp_path: Path) -> None:
    registry, home = slow_registry(tmp_path), tmp_path / "home"
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": i}} for i in range(200)])
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "test/slowish@1",
                             "--items", str(items), "--jobs", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = lines(out)
    assert 0 < len(done) < 200 and "interrupted:" in err and "Traceback" not in err
    assert not list((home / "work-v1").iterdir()) and not list((home / "leases").glob("*.lease"))
    again = tmap(home, "--adapter", "mock", "--ref", "test/slowish@1", "--items", str(items), "--jobs", "2",
                 registry=registry, timeout=600)
    resumed = lines(again.stdout)
    hits = sum(1 for o in resumed if o["cache"] == "hit")
    print(f"interrupted after {len(done)} items; the rerun answered {hits} of them from the cache")
    assert again.returncode == 0 and hits >= len(done)


@pytest.mark.slow
def test_kill_9_mid_batch_then_the_rerun_resumes_from_the_cache(tmp_path: Path) -> None:
    registry, home = slow_registry(tmp_path), tmp_path / "home"
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": i}} for i in range(100)])
    env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry))
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "map", "--adapter", "mock", "--ref", "test/slowish@1",
                             "--items", str(items), "--jobs", "2"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    before = len(lines(out))
    again = tmap(home, "--adapter", "mock", "--ref", "test/slowish@1", "--items", str(items), "--jobs", "2",
                 registry=registry, timeout=600)
    assert again.returncode == 0
    hits = sum(1 for o in lines(again.stdout) if o["cache"] == "hit")
    assert hits >= before > 0


def first_of_two_fails_alone(tmp_path: Path, bad_path: str) -> dict[str, Any]:
    """A batch of two textstats items, the first attaching ``bad_path``, the second a real file:
    the second succeeds, the batch exits 1 without an internal error; the first's error line."""
    doc = tmp_path / "doc.txt"
    doc.write_text("the cat sat on the mat\n")
    items = write_items(tmp_path / "items.jsonl", [
        {"inputs": {"file": {"$attach": "f"}}, "attach": {"f": bad_path}},
        {"inputs": {"file": {"$attach": "f"}}, "attach": {"f": str(doc)}}])
    proc = tmap(tmp_path / "home", "--adapter", "mock", "--ref", "data/textstats@1", "--items", str(items))
    out = lines(proc.stdout)
    assert proc.returncode == 1 and "internal error" not in proc.stderr, proc.stderr
    assert [o["status"] for o in out] == ["error", "success"]
    error: dict[str, Any] = out[0]["error"]
    return error


def test_an_attachment_path_the_os_refuses_fails_its_item_alone(tmp_path: Path) -> None:
    """A path too long for the OS (ENAMETOOLONG), or one theoryx may not read: that item fails
    with ERR_ATTACHMENT (it used to end the whole batch with ERR_INTERNAL, no line printed)."""
    error = first_of_two_fails_alone(tmp_path, "x" * 5000)
    assert error["code"] == "ERR_ATTACHMENT" and "File name too long" in error["message"]


def test_an_attachment_path_with_a_nul_byte_fails_its_item_alone(tmp_path: Path) -> None:
    """An ``attach`` path holding a NUL byte (``"\\u0000"`` in the JSON): that item fails with
    ERR_ATTACHMENT (it used to end the whole batch with ERR_INTERNAL, ValueError "embedded null byte")."""
    error = first_of_two_fails_alone(tmp_path, "doc\u0000.txt")
    assert error["code"] == "ERR_ATTACHMENT" and "NUL" in error["message"]


def test_an_attachment_under_an_unknown_users_home_fails_its_item_alone(tmp_path: Path) -> None:
    """``"attach": {"f": "~nosuchuser/x"}``: that item's file is not found, the others run (before:
    RuntimeError "Could not determine home directory." ended the whole batch with ERR_INTERNAL)."""
    error = first_of_two_fails_alone(tmp_path, "~theoryx-no-such-user/x.txt")
    assert error["code"] == "ERR_ATTACHMENT_NOT_FOUND" and error["message"].endswith("~theoryx-no-such-user/x.txt")


def test_items_from_a_closed_stdin_is_a_usage_error(tmp_path: Path) -> None:
    """``--items -`` with the standard input closed (``<&-``): ERR_USAGE, exit 2 (before:
    AttributeError, ERR_INTERNAL and a crash file)."""
    proc = tmap(tmp_path / "home", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", "-",
                preexec_fn=lambda: os.close(0))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "Error: cannot read --items -: the standard input is closed\n"
    assert proc.stdout == ""


def test_the_plain_progress_line_comes_while_no_item_finishes(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without a terminal, the progress line is printed every few seconds even while the items
    in flight run for long and none finishes (before: only when a result came, so a batch of
    slow items said nothing for minutes)."""
    from theoryx.cli import map as cli_map

    monkeypatch.setattr(cli_map, "PLAIN_EVERY_S", 0.05)
    progress = cli_map.Progress(cli_map.Tally(), quiet=False, total=3)
    time.sleep(0.3)                 # no result, no update()
    progress.close()
    err = capsys.readouterr().err
    assert err.count("theoryx map: 0 items: 0 hits, 0 misses, 0 failed") >= 2, err
    assert err.splitlines()[0].endswith(" of 3")
    quiet = cli_map.Progress(cli_map.Tally(), quiet=True, total=3)
    time.sleep(0.2)
    quiet.close()
    assert capsys.readouterr().err == ""


def test_a_malformed_item_with_an_id_keeps_its_id_in_its_line(tmp_path: Path) -> None:
    """A line that is an object with a usable ``id`` but otherwise no valid item (an unknown key,
    ``attach`` not a map of paths) fails with ERR_INPUTS and still carries its id, so that the
    failure can be matched to its row (before: ``"id": null``)."""
    items = write_items(tmp_path / "items.jsonl", [
        {"inputs": msg("a"), "id": "row-1", "extra": 1}, {"inputs": msg("b"), "id": 2, "attach": ["x"]},
        {"inputs": msg("c"), "id": ["no"]}])
    proc = tmap(tmp_path / "home", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items))
    out = lines(proc.stdout)
    assert proc.returncode == 1, proc.stderr
    assert [(o["line"], o["id"], o["error"]["code"]) for o in out] == \
        [(1, "row-1", "ERR_INPUTS"), (2, "2", "ERR_INPUTS"), (3, None, "ERR_INPUTS")]
    assert "unknown key" in out[0]["error"]["message"] and '"id" is a label' in out[2]["error"]["message"]


def test_pumped_lines_are_the_pipes_lines_whatever_the_reads_and_linear_in_a_long_line() -> None:
    """Lines across read boundaries, a 4 MiB line, CRLF, an empty line and no final newline come
    out as they went in; the long line costs one pass over its bytes (it used to be copied once
    per 64 KiB read: 40 MB took 35 s)."""
    import threading
    import time

    from theoryx.cli.map import pumped

    data = b"a\r\n" + b"b" * (4 << 20) + b"\n\n" + b"c" * 70_000 + b"\nlast"
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(data), 10_000):      # writes that never line up with the lines
                f.write(data[i:i + 10_000])
                f.flush()

    threading.Thread(target=feed, daemon=True).start()
    t0 = time.process_time()
    with os.fdopen(r, "rb") as f:
        got = [line for line in pumped(f, threading.Event()) if line is not None]
    took = time.process_time() - t0
    assert got == [b"a\r\n", b"b" * (4 << 20) + b"\n", b"\n", b"c" * 70_000 + b"\n", b"last"]
    print(f"4 MiB line through the pump: {took:.3f} s of CPU")


def test_out_naming_the_items_file_is_refused(tmp_path: Path) -> None:
    items = write_items(tmp_path / "same.jsonl", [{"inputs": msg("a")}])
    before = items.read_text()
    proc = tmap(tmp_path / "home", "--adapter", "mock", "--ref", "llm/litellm@1", "--items", str(items),
                "--out", str(tmp_path / "." / "same.jsonl"))
    assert proc.returncode == 2 and "is the --items file" in proc.stderr
    assert items.read_text() == before


def test_what_failed_items_were_charged_is_in_their_lines_the_summary_and_run_json(tmp_path: Path) -> None:
    """A processor that fails after a billable call is charged for it: the charge was in the plan
    but not in the failed item's line, nor in map's "spent" (which counted successes only), nor in
    run --json's error envelope."""
    registry = tmp_path / "registry"
    (registry / "processors" / "test").mkdir(parents=True)
    (registry / "processors" / "test" / "costly@1.yaml").write_text(COSTLY)
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "theoryx", "--home", str(home), "plan", "create", "f", "--limit-usd", "100"],
                   cwd=REPO, check=True, capture_output=True)
    items = write_items(tmp_path / "items.jsonl", [{"inputs": {"i": 6}}, {"inputs": {"i": 7}}])
    proc = tmap(home, "--adapter", "mock", "--ref", COSTLY_REF, "--items", str(items), "--plan", "f",
                "--adapter-opts-json", '{"exit_code": 3, "cost_usd": 0.5}', registry=registry)
    out = lines(proc.stdout)
    assert proc.returncode == 1 and [o["status"] for o in out] == ["error", "error"], proc.stderr
    charged = [(o["plan"], o["cost_micros"], o["overrun_micros"]) for o in out]
    assert charged == [("f", 500_000, 250_000)] * 2         # $0.25 reserved, $0.50 reported
    assert "2 failed; spent $1.000000" in proc.stderr, proc.stderr
    run = subprocess.run([sys.executable, "-m", "theoryx", "run", "--adapter", "mock", "--ref", COSTLY_REF,
                          "--inputs-json", '{"i": 8}', "--plan", "f", "--json",
                          "--adapter-opts-json", '{"exit_code": 3, "cost_usd": 5}'], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry)))
    body = json.loads(run.stdout)
    assert run.returncode == 1 and body["error"]["code"] == "ERR_PROCESSOR_FAILED", run.stderr
    assert (body["plan"], body["cost_micros"]) == ("f", 5_000_000) and body["overrun_micros"] > 0, body
