"""The run flow through the Python API: hits, misses, memo key ingredients, blob loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, REGISTRY

import theoryx
from theoryx.errors import InputsError, TheoryxError


def run(home: Path, inputs: Any = None, **kw: Any) -> theoryx.RunResult:
    kw.setdefault("adapter", "mock")
    kw.setdefault("registry", str(REGISTRY))
    return theoryx.run(kw.pop("ref", "llm/litellm@1"), inputs=HELLO if inputs is None else inputs, home=home, **kw)


def test_rerun_is_a_hit_with_identical_cids_and_the_adapter_not_called(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run(home)
    from theoryx.adapters import mock

    def boom(self: Any, request: Any) -> Any:
        raise AssertionError("adapter called on a hit")

    monkeypatch.setattr(mock.MockAdapter, "execute", boom)
    second = run(home)
    assert second.cache == "hit"
    assert [o.cid for o in second.outputs] == [o.cid for o in first.outputs]
    assert second.record.source_execution == first.execution_id


def test_key_order_in_inputs_is_irrelevant(home: Path) -> None:
    a = run(home, {"messages": HELLO["messages"], "temperature": 0.5, "model": "m"})
    b = run(home, {"model": "m", "temperature": 0.5, "messages": HELLO["messages"]})
    assert a.memo_key == b.memo_key and b.cache == "hit"


@pytest.mark.parametrize("change", [
    {"inputs": {"messages": [{"role": "user", "content": "Hello!"}]}},
    {"seed": 1},
    {"write_prefix": "/artifacts/other/"},
    {"salt": "poisoned-2026-11"},
])
def test_each_key_ingredient_changes_the_key(home: Path, change: dict[str, Any]) -> None:
    base = run(home)
    changed = run(home, **change)
    assert changed.memo_key != base.memo_key
    assert changed.cache == "miss"


def test_attachment_bytes_change_the_key(home: Path, tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    inputs = {"messages": [{"role": "user", "content": {"$attach": "a"}}]}
    f.write_bytes(b"one")
    k1 = run(home, inputs, attachments={"a": f}).memo_key
    f.write_bytes(b"onf")
    k2 = run(home, inputs, attachments={"a": f}).memo_key
    f.write_bytes(b"one")
    assert k1 != k2
    assert run(home, inputs, attachments={"a": f}).memo_key == k1


def test_attachment_host_path_does_not_change_the_key(home: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "a.txt").write_text("same")
    (tmp_path / "y" / "a.txt").write_text("same")
    inputs = {"messages": [{"role": "user", "content": {"$attach": "a"}}]}
    k1 = run(home, inputs, attachments={"a": tmp_path / "x" / "a.txt"}).memo_key
    k2 = run(home, inputs, attachments={"a": tmp_path / "y" / "a.txt"}).memo_key
    assert k1 == k2


def _copy_registry(dst: Path) -> Path:
    import shutil

    shutil.copytree(REGISTRY / "processors", dst / "processors")
    return dst


@pytest.mark.parametrize("edit", [
    ("runtime:\n  cpu: 1\n", "runtime:\n  cpu: 2\n"),
    ("  timeout: 300\n", "  timeout: 299\n"),
    ("  memory: 1024\n", "  memory: 2048\n"),
    ("    mime: text/plain\n", "    mime: text/markdown\n"),
    ("    max_tokens: {type: integer, minimum: 1}\n", "    max_tokens: {type: integer, minimum: 2}\n"),
    ('command: ["python3", "/app/run.py"]', 'command: ["python3", "-u", "/app/run.py"]'),
])
def test_every_execution_relevant_spec_field_changes_the_key(home: Path, tmp_path: Path, edit: tuple[str, str]) -> None:
    reg = _copy_registry(tmp_path / "reg")
    spec = reg / "processors" / "llm" / "litellm@1.yaml"
    base = run(home, registry=str(reg)).memo_key
    text = spec.read_text()
    assert edit[0] in text
    spec.write_text(text.replace(edit[0], edit[1], 1))
    assert run(home, registry=str(reg)).memo_key != base


def test_description_does_not_change_the_key(home: Path, tmp_path: Path) -> None:
    reg = _copy_registry(tmp_path / "reg")
    spec = reg / "processors" / "llm" / "litellm@1.yaml"
    base = run(home, registry=str(reg))
    spec.write_text(spec.read_text().replace("Chat completion", "A chat completion"))
    again = run(home, registry=str(reg))
    assert again.memo_key == base.memo_key and again.cache == "hit"


def test_mock_source_change_changes_the_mock_key(home: Path, tmp_path: Path) -> None:
    reg = _copy_registry(tmp_path / "reg")
    base = run(home, registry=str(reg)).memo_key
    mock = reg / "processors" / "llm" / "litellm" / "mock.py"
    mock.write_text(mock.read_text() + "\n# changed\n")
    assert run(home, registry=str(reg)).memo_key != base


def test_hit_whose_blob_was_deleted_is_a_miss_and_reexecutes(home: Path) -> None:
    first = run(home)
    from theoryx.store.handle import open_stores

    cas = open_stores(home).cas
    victim = first.outputs[1].cid
    assert cas.delete(victim)
    second = run(home)
    assert second.cache == "miss"
    assert second.outputs[1].cid == victim
    assert cas.exists(victim)
    assert run(home).cache == "hit"


def test_inputs_are_validated_on_a_miss(home: Path) -> None:
    with pytest.raises(InputsError) as info:
        run(home, {"messages": []})
    assert info.value.code == "ERR_INPUTS"
    assert "/messages" in info.value.message


def test_every_invocation_is_recorded_including_failures(home: Path) -> None:
    ok = run(home)
    with pytest.raises(TheoryxError) as info:
        run(home, {"nope": 1})
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    db = open_stores(home).db
    recs = list(executions.latest(db))
    assert [r.execution_id for r in recs] == [info.value.execution_id, ok.execution_id]
    assert recs[0].status == "error" and recs[0].error and recs[0].error["code"] == "ERR_INPUTS"


def test_receipt_contents(home: Path) -> None:
    res = run(home, seed=7, plan="p1")
    from theoryx.store.handle import open_stores
    from theoryx.store.worldpaths import resolve

    stores = open_stores(home)
    receipt = json.loads(stores.cas.read(resolve(stores, res.receipt_path)))
    assert receipt["seed"] == 7
    assert receipt["memo_key"] == res.memo_key
    assert receipt["env_fingerprint"] == res.env_fingerprint
    assert receipt["output_cids"] == {o.path: o.cid for o in res.outputs}
    assert receipt["execution_id"] == res.execution_id
    assert receipt["ref"] == "llm/litellm@1" and receipt["adapter"] == "mock"
    assert receipt["cache_hit"] is False and receipt["plan"] == "p1"
    assert receipt["spec_digest"].startswith("b3:") and receipt["theoryx_version"]
    # the memo key recomputes from the stored pre-image
    from theoryx.core.canonical import digest

    assert digest(stores.cas.read(receipt["action_cid"])) == res.memo_key
    index = json.loads(stores.cas.read(resolve(stores, res.index_path)))
    assert [o["path"] for o in index["outputs"]] == [o.path for o in res.outputs]


def test_workspace_is_removed_after_the_run(home: Path) -> None:
    run(home)
    assert list((home / "work-v1").iterdir()) == []
    assert list((home / "leases").iterdir()) == []


def test_inputs_without_a_canonical_form_are_err_inputs(home: Path) -> None:
    with pytest.raises(InputsError) as info:
        run(home, {"messages": HELLO["messages"], "max_tokens": 2**60})
    assert "canonical" in info.value.message


def test_a_symlinked_result_file_is_never_followed(home: Path, tmp_path: Path) -> None:
    from theoryx.adapters.base import Workspace
    from theoryx.pipeline.miss import read_result

    secret = tmp_path / "host-secret.json"
    secret.write_text('{"cost_usd": 99, "usage": {"leak": true}}')
    ws = Workspace(tmp_path / "ws")
    ws.result_dir.mkdir(parents=True)
    ws.result.symlink_to(secret)
    assert read_result(ws) == {}
    ws.result.unlink()
    ws.result.write_text('{"cost_usd": 0.5}')
    assert read_result(ws) == {"cost_usd": 0.5}


def test_an_attachment_withdrawn_by_gc_mid_run_is_reinstated(home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cas import Store

    f = tmp_path / "a.txt"
    f.write_text("payload")
    inputs = {"messages": [{"role": "user", "content": {"$attach": "a"}}]}
    original = Store.link_to
    withdrawn: list[str] = []

    def link_after_withdraw(self: Store, cid: str, dest: Path, **kw: bool) -> None:
        if not withdrawn:  # a concurrent gc withdraws the blob just before it is materialised
            assert self.withdraw(cid)
            withdrawn.append(cid)
        original(self, cid, dest, **kw)

    monkeypatch.setattr(Store, "link_to", link_after_withdraw)
    result = run(home, inputs, attachments={"a": f}, no_cache=True)
    from theoryx.store.handle import open_stores

    cas = open_stores(home).cas
    assert withdrawn and cas.exists(withdrawn[0]) and list(cas.withdrawn()) == []
    assert result.cache == "bypass"


@pytest.mark.parametrize("usage", ["2**64", "-(2**63) - 1", "10**400", "nested(600)", "[1, 2]", "{'k': 'x' * 70000}"])
def test_a_usage_the_record_cannot_hold_is_kept_as_nothing_and_the_run_recorded(
        home: Path, tmp_path: Path, usage: str) -> None:
    """A processor reporting a token count beyond 64 bits (or usage nested too deep to pack, or
    too large) crashed the record with ERR_INTERNAL after the plan was charged, leaving no
    execution; now the record keeps ``usage`` as {} and the charge is judged as before."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    reg = _copy_registry(tmp_path / "reg")
    mock = reg / "processors" / "llm" / "litellm" / "mock.py"
    mock.write_text(mock.read_text().replace(
        '    return {"usage": usage, "meta":',
        "    def nested(n):\n        v = {}\n        for _ in range(n):\n            v = {'a': v}\n        return v\n"
        f"    usage = {usage}\n"
        '    return {"usage": usage, "meta":'))
    result = run(home, registry=str(reg), plan="p")
    stored = executions.get(open_stores(home).db, result.execution_id)
    assert result.record.status == "success" and stored is not None and stored.usage == {} and result.record.usage == {}
    assert run(home, registry=str(reg), plan="p").cache == "hit"


def test_a_result_file_nested_too_deep_to_parse_is_no_result() -> None:
    from theoryx.pipeline.miss import parse_result

    assert parse_result(b"[" * 200_000) == {} and parse_result(b'{"usage": {"a": 1}}') == {"usage": {"a": 1}}


def test_a_failure_that_cannot_be_recorded_says_so_and_keeps_its_own_error(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from notices_testing import captured_notices, texts

    from theoryx.store import executions

    def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("Integer value out of range")

    monkeypatch.setattr(executions, "record", broken)
    with captured_notices() as records, pytest.raises(InputsError) as info:
        run(home, {"nope": 1})
    (warning,) = texts(records, "warning")
    assert f"the failed execution {info.value.execution_id} could not be recorded" in warning
    assert "OverflowError" in warning


def test_malformed_items_fail_alone_in_session_map(home: Path) -> None:
    """Failures are results: an item that is not a mapping, or whose attachments are not a
    mapping of paths, fails with ERR_INPUTS and the others run (it aborted the whole batch)."""
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        results = list(s.map("llm/litellm@1", ["hello", [1], {"inputs": HELLO, "attach": ["a"]},
                                                {"inputs": HELLO, "attachments": {"d": 5}}, {"inputs": HELLO}],
                             adapter="mock"))
    codes = [r.error.code if r.error else "ok" for r in results]
    assert codes == ["ERR_INPUTS", "ERR_INPUTS", "ERR_INPUTS", "ERR_INPUTS", "ok"], [r.error for r in results]


def test_integers_past_pythons_digit_limit_are_clean_errors(home: Path) -> None:
    with pytest.raises(InputsError, match="of about 5,000 digits"):
        run(home, {**HELLO, "x": 10**5000})
    with pytest.raises(TheoryxError, match="seed of about 5,000 digits"):
        run(home, seed=10**5000)


def test_a_run_failing_with_a_foreign_exception_is_still_recorded(home: Path) -> None:
    """A stream callback that raises: the exception reaches the caller as it is, and the run is
    recorded as ERR_INTERNAL (the plan's ledger named an execution no record knew)."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    def broken(stream: str, chunk: bytes) -> None:
        raise ZeroDivisionError("the caller's own bug")

    with pytest.raises(ZeroDivisionError):
        run(home, plan="team", stream=broken)
    (rec,) = list(executions.latest(open_stores(home).db))
    assert rec.status == "error" and rec.error is not None and rec.error["code"] == "ERR_INTERNAL"
    assert "ZeroDivisionError" in rec.error["message"]


@pytest.mark.parametrize(("kw", "says"), [({"seed": 1.5}, "seed must be an integer"),
                                          ({"seed": True}, "seed must be an integer"),
                                          ({"seed": "1"}, "seed must be an integer"),
                                          ({"plan": 5}, "plan must be a string")])
def test_arguments_of_the_wrong_type_are_usage_errors(home: Path, kw: dict[str, Any], says: str) -> None:
    with pytest.raises(TheoryxError, match=says) as info:
        run(home, **kw)
    assert info.value.code == "ERR_USAGE"


@pytest.mark.parametrize(("kw", "code", "says"), [
    ({"ref": 5}, "ERR_REF", "ref must be a string"),
    ({"ref": None}, "ERR_REF", "ref must be a string"),
    ({"ref": b"llm/litellm@1"}, "ERR_REF", "ref must be a string"),
    ({"attachments": ["doc"]}, "ERR_ATTACHMENT", "attachments must map names to file paths"),
    ({"attachments": "doc=notes.txt"}, "ERR_ATTACHMENT", "attachments must map names to file paths"),
    ({"attachments": {"doc": 5}}, "ERR_ATTACHMENT", "attachment 'doc' must be a file path"),
    ({"attachments": {"doc": b"/etc/hostname"}}, "ERR_ATTACHMENT", "attachment 'doc' must be a file path"),
    ({"attachments": {5: "/etc/hostname"}}, "ERR_ATTACHMENT", "attachment names must be non-empty strings"),
    ({"adapter_options": [("exit_code", 1)]}, "ERR_ADAPTER_OPTIONS", "adapter_options must be a mapping"),
    ({"adapter_options": "exit_code=1"}, "ERR_ADAPTER_OPTIONS", "adapter_options must be a mapping"),
    ({"stream": 5}, "ERR_USAGE", "stream must be a callable"),
    ({"no_cache": "no"}, "ERR_USAGE", "no_cache must be True or False"),
    ({"no_cache": 1}, "ERR_USAGE", "no_cache must be True or False"),
    ({"build": "false"}, "ERR_USAGE", "build must be True or False"),
])
def test_keywords_of_the_wrong_type_are_theoryx_errors_before_anything_is_recorded(
        home: Path, kw: dict[str, Any], code: str, says: str) -> None:
    """They raised AttributeError, TypeError or ValueError from deep inside (or, for no_cache and
    build, were taken as true: no_cache="no" bypassed the cache); map() shares the check."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    ref = kw.pop("ref", "llm/litellm@1")
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        with pytest.raises(TheoryxError, match=says) as info:
            s.run(ref, inputs=HELLO, adapter="mock", **kw)
        assert info.value.code == code
        if "attachments" not in kw:
            with pytest.raises(TheoryxError, match=says):
                list(s.map(ref, [{"inputs": HELLO}], adapter="mock", **kw))
    assert list(executions.latest(open_stores(home).db)) == []


@pytest.mark.parametrize(("kw", "says"), [
    ({"home": ""}, "home must be a path"), ({"home": 5}, "home must be a path"),
    ({"home": b"/tmp/h"}, "home must be a path"), ({"home": "/tmp/a\0b"}, "home must be a path"),
    ({"registry": 5}, "registry must be a path"), ({"registry": b"registry"}, "registry must be a path"),
    ({"registry": ""}, "registry must be a path"),
])
def test_a_session_home_or_registry_that_is_no_path_is_a_usage_error_and_opens_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kw: dict[str, Any], says: str) -> None:
    """They raised TypeError or ValueError from pathlib (registry=5 only at the first run), and
    home="" made the working directory a theoryx home."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("THEORYX_HOME", str(tmp_path / "default-home"))
    with pytest.raises(TheoryxError, match=says) as info:
        theoryx.Session(**kw)
    assert info.value.code == "ERR_USAGE"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TheoryxError, match=says) as info:
        theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", **kw)
    assert info.value.code == "ERR_USAGE"


def test_a_session_home_and_registry_may_be_strings_or_paths(home: Path) -> None:
    with theoryx.Session(str(home), registry=REGISTRY) as s:
        assert s.run("llm/litellm@1", inputs=HELLO, adapter="mock").cache == "miss"
    assert theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home,
                       registry=str(REGISTRY)).cache == "hit"


def test_a_registry_given_as_a_path_works_and_jobs_must_be_positive(home: Path) -> None:
    assert run(home, registry=REGISTRY).cache == "miss"
    with theoryx.Session(home, registry=REGISTRY) as s:
        for jobs in (0, -1):
            with pytest.raises(TheoryxError, match="jobs must be a positive integer"):
                list(s.map("llm/litellm@1", [{"inputs": HELLO}], adapter="mock", jobs=jobs))


def test_a_file_name_that_is_not_utf8_is_a_clear_attachment_error_and_recorded(home: Path, tmp_path: Path) -> None:
    """os.fsdecode gives such a name lone surrogates: it used to fail as 'inputs have no canonical
    JSON form' (the inputs were fine), and a missing one could not even be recorded."""
    import os

    from theoryx.errors import AttachmentError
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    (tmp_path / os.fsdecode(b"g\xff.txt")).write_bytes(b"x")
    for name, code in ((b"g\xff.txt", "ERR_ATTACHMENT"), (b"missing\xff.txt", "ERR_ATTACHMENT_NOT_FOUND")):
        with pytest.raises(AttachmentError) as info:
            run(home, {"file": {"$attach": "doc"}}, ref="data/textstats@1",
                attachments={"doc": tmp_path / os.fsdecode(name)})
        assert info.value.code == code and "\\udcff" in info.value.message
        assert executions.get(open_stores(home).db, info.value.execution_id or "").status == "error"


@pytest.mark.parametrize("call", ["output", "holding"])
@pytest.mark.parametrize("value", [None, 5, b"/artifacts/outputs/text/response.txt"])
def test_session_output_and_holding_refuse_a_value_of_the_wrong_type(home: Path, call: str, value: Any) -> None:
    """They raised AttributeError ('int' object has no attribute 'startswith' / 'outputs')."""
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        with pytest.raises(TheoryxError, match=f"{call}\\(\\) takes") as info:
            if call == "output":
                s.output(value)
            else:
                with s.holding(value):
                    pass
        assert info.value.code == "ERR_USAGE"


@pytest.mark.parametrize("name", ["salt", "write_prefix"])
def test_a_string_keyword_with_a_lone_surrogate_is_a_usage_error_naming_it(home: Path, name: str) -> None:
    """salt="\\udcff" failed as ERR_INPUTS "inputs have no canonical JSON form" (the inputs were
    fine) and the failed execution could not be recorded."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    value = "/artifacts/\udcff/" if name == "write_prefix" else "a\udcff"
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        with pytest.raises(TheoryxError, match=f"{name} must be valid Unicode text") as info:
            s.run("llm/litellm@1", inputs=HELLO, adapter="mock", **{name: value})
        assert info.value.code == "ERR_USAGE"
    assert list(executions.latest(open_stores(home).db)) == []


def test_a_home_whose_tilde_cannot_be_expanded_is_a_usage_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """pathlib's RuntimeError "Could not determine home directory." escaped (the CLI reported it
    as an internal error with a crash file)."""
    from theoryx.cli.messages import message

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TheoryxError, match="cannot be expanded") as info:
        theoryx.Session("~no-such-user-theoryx-test/home")
    assert info.value.code == "ERR_USAGE"
    assert message(info.value).startswith("--home '~no-such-user-theoryx-test/home' cannot be expanded")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: (_ for _ in ()).throw(RuntimeError("no home"))))
    with pytest.raises(TheoryxError, match="set THEORYX_HOME") as info:
        theoryx.Session()
    assert info.value.code == "ERR_USAGE"
    assert list(tmp_path.iterdir()) == []


def test_a_registry_whose_tilde_cannot_be_expanded_is_a_usage_error(home: Path) -> None:
    """pathlib's RuntimeError escaped (the CLI reported an internal error with a crash file)."""
    with pytest.raises(TheoryxError, match="registry '~no-such-user-theoryx-test/r' cannot be expanded") as info:
        theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home,
                    registry="~no-such-user-theoryx-test/r")
    assert info.value.code == "ERR_USAGE"


@pytest.mark.parametrize("options", [{"seed": "x"}, {"seed": 2 ** 60}, {"plan": "a/b"}, {"no_cache": "no"}])
def test_theoryx_run_refuses_a_usage_error_before_it_creates_a_home(tmp_path: Path, options: dict[str, Any]) -> None:
    """`theoryx.run(home=NEW, seed="x")` opened (and so created) the home, then refused the seed:
    an empty home was left behind, as the CLI's usage errors did."""
    home = tmp_path / "new-home"
    with pytest.raises(TheoryxError) as info:
        theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY), **options)
    assert info.value.code.startswith("ERR_") and not home.exists(), info.value


def test_a_result_and_its_outputs_survive_pickling_into_another_process(home: Path, tmp_path: Path) -> None:
    """A RunResult sent through multiprocessing: it pickles (its store as the store's root) and,
    unpickled in a fresh interpreter, still reads its outputs checked against their cids."""
    import pickle
    import subprocess
    import sys

    res = run(home)
    name = res.names()[0]
    dump = tmp_path / "result.pickle"
    dump.write_bytes(pickle.dumps((res, res.output(name))))
    code = ("import pickle, sys; r, o = pickle.load(open(sys.argv[1], 'rb')); "
            "sys.stdout.buffer.write(r.output(sys.argv[2]).bytes() + b'|' + o.bytes())")
    proc = subprocess.run([sys.executable, "-c", code, str(dump), name], capture_output=True, check=True)
    body = res.output(name).bytes()
    assert proc.stdout == body + b"|" + body
    back = pickle.loads(dump.read_bytes())[0]
    assert back == res and back.record == res.record


def test_a_seed_given_as_an_integer_like_value_is_its_integer(home: Path) -> None:
    """numpy's integers (anything with __index__, not bool) are seeds: the same key as the int."""
    class Int64:
        def __init__(self, v: int) -> None:
            self.v = v

        def __index__(self) -> int:
            return self.v

    assert run(home, seed=Int64(7)).memo_key == run(home, seed=7).memo_key
    with pytest.raises(TheoryxError, match="seed must be an integer"):
        run(home, seed=7.0)
    with pytest.raises(TheoryxError, match="seed must be an integer"):
        run(home, seed=True)


def test_the_package_exposes_errors_items_and_item_results_lazily() -> None:
    import subprocess
    import sys

    code = ("import sys, theoryx; assert 'theoryx.errors' not in sys.modules; "
            "print(theoryx.errors.BudgetExceeded.code, theoryx.Item.__name__, theoryx.ItemResult.__name__); "
            "import theoryx.pipeline.batch as b; assert theoryx.Item is b.Item")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ERR_BUDGET_EXCEEDED", "Item", "ItemResult"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        theoryx.nothing  # noqa: B018


def test_map_refuses_attachment_names_that_are_not_strings_per_item(home: Path, tmp_path: Path) -> None:
    """As run() does: {1: path} is not quietly the name "1" (two items naming 1 and "1" met as one)."""
    doc = tmp_path / "doc.txt"
    doc.write_text("x")
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        results = list(s.map("llm/litellm@1", [{"inputs": HELLO, "attachments": {1: doc}},
                                                {"inputs": HELLO, "attachments": {"": doc}}], adapter="mock"))
    assert [r.error.code if r.error else "ok" for r in results] == ["ERR_INPUTS", "ERR_INPUTS"]
    assert results[0].error is not None and "attachment names must be non-empty strings, got int '1'" in str(
        results[0].error)
