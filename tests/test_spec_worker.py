"""The spec's ``worker`` field (persistent workers, BUILD.md "Persistent workers"): validated,
cached, shown by ``registry show``, and never part of the memo key — a worker's result keys
exactly like a one-shot run of the same processor and inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, Cli

from theoryx.errors import SpecError
from theoryx.spec.model import ProcessorSpec, WorkerMode
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry, parse

BASE = f"""\
ref: t/echo@1
image:
  ref: example.invalid/echo@sha256:{"0" * 64}
inputs: {{type: object}}
outputs: []
"""


def spec(extra: str, tmp_path: Path) -> ProcessorSpec:
    path = tmp_path / "echo@1.yaml"
    path.write_text(BASE + extra)
    return parse(path.read_bytes(), path)


def test_worker_is_optional_and_defaults_max_requests(tmp_path: Path) -> None:
    assert spec("", tmp_path).worker is None
    assert spec("worker: {protocol: jsonl}\n", tmp_path).worker == WorkerMode("jsonl", 1000)
    assert spec("worker: {protocol: jsonl, max_requests: 7}\n", tmp_path).worker == WorkerMode("jsonl", 7)


@pytest.mark.parametrize(("extra", "field", "says"), [
    ("worker: jsonl\n", "worker", "must be a mapping"),
    ("worker: {max_requests: 3}\n", "worker.protocol", "is required"),
    ("worker: {protocol: grpc}\n", "worker.protocol", "must be one of: jsonl"),
    ("worker: {protocol: jsonl, max_requests: 0}\n", "worker.max_requests", "positive integer"),
    ("worker: {protocol: jsonl, max_requests: 2.5}\n", "worker.max_requests", "positive integer"),
    ("worker: {protocol: jsonl, max_requests: true}\n", "worker.max_requests", "positive integer"),
    ("worker: {protocol: jsonl, max_requests: 10000000000}\n", "worker.max_requests", "at most"),
    ("worker: {protocol: jsonl, idle_timeout: 5}\n", "worker.idle_timeout", "unknown field"),
])
def test_a_bad_worker_field_is_a_spec_error_naming_it(tmp_path: Path, extra: str, field: str, says: str) -> None:
    with pytest.raises(SpecError) as ei:
        spec(extra, tmp_path)
    assert f"field '{field}'" in ei.value.message and says in ei.value.message, ei.value.message
    assert ei.value.code == "ERR_SPEC"


def test_worker_is_not_an_execution_field_and_survives_the_spec_cache(tmp_path: Path) -> None:
    with_worker = spec("worker: {protocol: jsonl, max_requests: 5}\n", tmp_path)
    without = dataclasses.replace(with_worker, worker=None)
    assert with_worker.execution_fields() == without.execution_fields()
    assert "worker" not in json.dumps(with_worker.execution_fields())
    cached = ProcessorSpec.from_cache(with_worker.to_cache(), with_worker.source)
    assert cached == with_worker and cached.worker == WorkerMode("jsonl", 5)
    old_entry = {k: v for k, v in without.to_cache().items() if k != "worker"}   # cached before the field
    assert ProcessorSpec.from_cache(old_entry, without.source).worker is None


def test_the_shipped_processors_declare_a_worker_with_the_same_keys(tmp_path: Path) -> None:
    """Mock runs of the shipped processors key the same whether or not the spec declares a worker."""
    import shutil

    import theoryx

    registry = Registry.from_option(str(REGISTRY))
    for ref in ("llm/litellm@1", "data/textstats@1"):
        assert registry.load(Ref.parse(ref)).worker == WorkerMode("jsonl", 1000), ref
    plain = tmp_path / "registry"
    shutil.copytree(REGISTRY, plain, ignore=shutil.ignore_patterns("__pycache__"))
    yaml = plain / "processors" / "llm" / "litellm@1.yaml"
    yaml.write_text("".join(line for line in yaml.read_text().splitlines(keepends=True)
                            if not line.startswith("worker:")))
    hello = {"messages": [{"role": "user", "content": "Hello"}]}
    keys = [theoryx.run("llm/litellm@1", inputs=hello, adapter="mock", home=tmp_path / f"home{i}",
                        registry=str(reg)).memo_key for i, reg in enumerate((REGISTRY, plain))]
    assert keys[0] == keys[1], keys


def test_registry_show_prints_the_worker(cli: Cli) -> None:
    res = cli("registry", "show", "data/textstats@1", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["worker"] == {"protocol": "jsonl", "max_requests": 1000}
