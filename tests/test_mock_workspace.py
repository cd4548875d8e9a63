"""The mock adapter runs in-process, so a miss lays out only the workspace it uses (its root and
``outputs/``); a ``mock.py`` that reaches for ``ctx.workspace`` still gets a container's layout.
Every run executes ``mock.py`` afresh: no module state carries over, and an edited file runs as
edited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import theoryx

SPEC = f"""\
ref: test/probe@1
description: Reports what its workspace holds.
image:
  ref: example.invalid/probe@sha256:{"0" * 64}
runtime: {{timeout: 60}}
inputs:
  type: object
  properties:
    i: {{type: integer}}
    whole: {{type: boolean}}
outputs:
  - {{path: seen.json, mime: application/json}}
"""
MOCK = '''\
import json

calls = 0


def run(inputs, outdir, ctx):
    global calls
    calls += 1
    seen = {"calls": calls, "version": 1}
    if inputs.get("whole"):
        ws = ctx.workspace
        seen["inputs_json"] = json.loads(ws.inputs_json.read_text())
        ws.result.write_text(json.dumps({"usage": {"items": 7}}))
    root = outdir.parent
    seen["root"] = sorted(p.name for p in root.iterdir())
    (outdir / "seen.json").write_text(json.dumps(seen))
    return None
'''


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    root = tmp_path / "probes"
    (root / "processors" / "test" / "probe").mkdir(parents=True)
    (root / "processors" / "test" / "probe@1.yaml").write_text(SPEC)
    (root / "processors" / "test" / "probe" / "mock.py").write_text(MOCK)
    return root


def probe(home: Path, reg: Path, **inputs: Any) -> tuple[theoryx.RunResult, dict[str, Any]]:
    result = theoryx.run("test/probe@1", inputs=inputs, adapter="mock", home=home, registry=str(reg))
    seen: dict[str, Any] = result.output("seen.json").json()
    return result, seen


def test_a_mock_run_gets_only_its_outputs_directory(home: Path, reg: Path) -> None:
    _, seen = probe(home, reg, i=1)
    assert seen["root"] == ["outputs"], "no inputs/, result/ or inputs.json for an in-process run"
    assert not any((home / "work-v1").iterdir()), "the workspace is removed"


def test_ctx_workspace_lays_out_what_a_container_sees_and_its_result_file_is_read(home: Path, reg: Path) -> None:
    result, seen = probe(home, reg, i=2, whole=True)
    assert seen["inputs_json"] == {"i": 2, "whole": True}
    assert seen["root"] == ["inputs", "inputs.json", "outputs", "result"]
    assert result.record.usage == {"items": 7}


def test_module_state_does_not_carry_over_between_runs(home: Path, reg: Path) -> None:
    assert [probe(home, reg, i=i)[1]["calls"] for i in range(3)] == [1, 1, 1]


def test_an_edited_mock_runs_as_edited(home: Path, reg: Path) -> None:
    assert probe(home, reg, i=5)[1]["version"] == 1
    mock = reg / "processors" / "test" / "probe" / "mock.py"
    mock.write_text(MOCK.replace('"version": 1', '"version": 2'))
    assert probe(home, reg, i=5)[1]["version"] == 2, "a changed mock.py is a new key, run anew"


def test_a_result_returned_as_a_value_is_recorded(home: Path, tmp_path: Path) -> None:
    result = theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "a b c"}]},
                         adapter="mock", home=home, registry=str(Path(__file__).resolve().parent.parent / "registry"),
                         adapter_options={"cost_usd": 0.5})
    assert result.record.usage["prompt_tokens"] == 3
    assert result.record.cost_micros == 500_000
    assert json.loads(result.output("metadata.json").text())["mock"] is True
