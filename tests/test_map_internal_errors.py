"""A bug met by one item of a batch fails that item alone with ``ERR_INTERNAL``, not the batch."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import REGISTRY, Cli

import theoryx.pipeline.session as session_module
from theoryx import Session
from theoryx.errors import InternalError
from theoryx.store import executions
from theoryx.store.handle import open_stores


def msg(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _text(inputs: Any) -> str:
    return json.dumps(inputs)


@pytest.fixture
def buggy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Items whose text holds ``boom-begin`` meet a bug while being prepared (on the batch's
    thread); ``boom-miss`` while executing (on a pool thread)."""
    real_prepare, real_execute = session_module.prepare, session_module._execute

    def prepare(stores: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        if "boom-begin" in _text(req.inputs):
            raise RuntimeError("a bug while preparing")
        return real_prepare(stores, req, *args, **kwargs)

    def execute(run: Any, prep: Any, **kwargs: Any) -> Any:
        if "boom-miss" in _text(run.request.inputs):
            raise KeyError("a bug while executing")
        return real_execute(run, prep, **kwargs)

    monkeypatch.setattr(session_module, "prepare", prepare)
    monkeypatch.setattr(session_module, "_execute", execute)


ITEMS = [{"inputs": msg("a")}, {"inputs": msg("boom-begin")}, {"inputs": msg("b")},
         {"inputs": msg("boom-miss")}, {"inputs": msg("c")}, {"inputs": msg("boom-miss again")}]


@pytest.mark.usefixtures("buggy")
@pytest.mark.parametrize("jobs", [1, 3])
def test_a_bug_in_one_item_fails_that_item_and_the_batch_goes_on(tmp_path: Path, jobs: int) -> None:
    with Session(tmp_path / "home", registry=REGISTRY) as s:
        results = list(s.map("llm/litellm@1", ITEMS, adapter="mock", jobs=jobs))
    assert [r.item.line for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r.ok for r in results] == [True, False, True, False, True, False]
    for r in (results[1], results[3], results[5]):
        assert isinstance(r.error, InternalError) and r.error.code == "ERR_INTERNAL"
        assert r.error.execution_id is not None
        assert isinstance(r.error.__cause__, RuntimeError | KeyError)     # the traceback travels with it
    assert "RuntimeError: a bug while preparing" in str(results[1].error)
    assert "KeyError" in str(results[3].error)
    db = open_stores(tmp_path / "home").db
    for r in (results[1], results[3]):      # each failed item is recorded as such, like a single run's failure
        assert r.error is not None and r.error.execution_id is not None
        rec = executions.get(db, r.error.execution_id)
        assert rec.status == "error" and rec.error is not None and rec.error["code"] == "ERR_INTERNAL"


@pytest.mark.usefixtures("buggy")
def test_the_cli_names_one_crash_file_per_kind_of_bug_and_says_so_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_dir = tmp_path / "crashes"
    crash_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(crash_dir))
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    res = Cli(tmp_path / "home", REGISTRY)("map", "--adapter", "mock", "--ref", "llm/litellm@1",
                                           "--items", str(items), "--jobs", "2", "--quiet")
    assert res.exit_code == 1
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["status"] for o in out] == ["success", "error", "success", "error", "success", "error"]
    files = sorted(crash_dir.glob("theoryx-crash-*"))
    assert len(files) == 2           # two kinds of bug, three items: one file per kind
    messages = [out[i]["error"]["message"] for i in (1, 3, 5)]
    assert all(o["error"]["code"] == "ERR_INTERNAL" for o in (out[1], out[3], out[5]))
    assert messages[1] == messages[2] and messages[0] != messages[1]
    for m in messages:
        assert any(str(f) in m for f in files)
    assert "Traceback" in files[0].read_text() and "Traceback" not in res.stderr
    assert "3 item(s) failed with an internal error (a bug in theoryx, 2 kind(s))" in res.stderr
