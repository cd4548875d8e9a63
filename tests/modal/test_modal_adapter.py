"""The modal adapter through ``theoryx.run``, with the offline fake of the Modal boundary
running the real function body (:mod:`theoryx.adapters.modal.runner`) on the host."""

from __future__ import annotations

import hashlib
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from modal_testing import FakeModal, StreamingFakeModal
from theoryx_testing import output

import theoryx
from cas import Store
from theoryx import adapters
from theoryx.adapters.base import Outcome
from theoryx.adapters.modal.adapter import ModalAdapter
from theoryx.budget.money import ceil_micros
from theoryx.budget.pricing import Rates
from theoryx.errors import (
    ExecutionTimeout,
    ImageNotFound,
    ModalAuthError,
    ModalUnreachable,
    OutOfMemory,
    OutputRejected,
    ProcessorFailed,
    UsageError,
)
from theoryx.pipeline.result import RunResult
from theoryx.store import executions
from theoryx.store.handle import open_stores

SECRET = "s3cr3t-value-for-the-probe"


def run(registry: Path, home: Path, inputs: dict[str, Any], ref: str = "test/probe@1", **kw: Any) -> RunResult:
    kw.setdefault("adapter", "modal")
    return theoryx.run(ref, inputs=inputs, home=home, registry=str(registry), **kw)


def blob(home: Path, cid: str | None) -> bytes:
    assert cid is not None
    return Store(home / "cas-v1").read(cid)


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[Outcome]:
    """The Outcomes the modal adapter returned (the executor keeps only part of them)."""
    seen: list[Outcome] = []
    original = ModalAdapter.execute

    def spy(self: ModalAdapter, request: Any) -> Outcome:
        outcome = original(self, request)
        seen.append(outcome)
        return outcome

    monkeypatch.setattr(ModalAdapter, "execute", spy)
    return seen


def test_success_reaches_the_execution_record(registry: Path, home: Path, tmp_path: Path, fake: FakeModal,
                                              outcomes: list[Outcome]) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("attached text\n")
    res = run(registry, home, {"mode": "hello", "file": {"$attach": "doc"}}, attachments={"doc": doc})
    assert res.cache == "miss" and res.adapter == "modal"
    body = json.loads(output(home, res, "out.json"))
    assert body["file_text"] == "attached text\n"
    assert body["inputs"]["file"]["$artifact"].endswith("/artifacts/inputs/" + res.record.input_cids[0] + "/doc.txt")
    env = body["env"]
    assert env["THEORYX_INPUTS"].endswith("/theoryx/inputs.json")
    assert env["THEORYX_WRITE_PREFIX"].endswith("/artifacts/outputs/")
    assert env["THEORYX_RESULT"].endswith("/theoryx/result/result.json")
    assert env["THEORYX_EXECUTION_ID"] == res.execution_id and env["THEORYX_REF"] == "test/probe@1"
    assert env["THEORYX_SEED"] == "0" and env["THEORYX_STREAM"] == "0" and env["HOME"] == "/tmp"
    assert "MODAL_TASK_ID" not in env                        # Modal's own variables are not passed on
    assert body["cwd"].endswith("/app")                        # the Dockerfile's WORKDIR
    assert output(home, res, "sub/note.txt") == b"nested\n"
    assert res.record.usage == {"units": 3}
    # the reported cost plus Modal's compute: the adapter bills compute
    rate = Rates().per_second(0.5, 256, None)
    assert rate is not None
    compute = ceil_micros(rate * Decimal(str(outcomes[0].meta["compute_seconds"])))
    assert compute > 0 and res.record.cost_micros == 250_000 + compute
    assert blob(home, res.record.stdout_cid) == b"hello on stdout\n"
    assert blob(home, res.record.stderr_cid) == b"hello on stderr\n"
    stored = executions.get(open_stores(home).db, res.execution_id)
    assert stored.cost_micros == res.record.cost_micros and stored.usage == {"units": 3}
    assert stored.outputs == res.outputs


def test_the_call_carries_the_specs_resources(registry: Path, home: Path, fake: FakeModal,
                                              outcomes: list[Outcome]) -> None:
    run(registry, home, {"mode": "hello"})
    call = fake.calls[0]
    assert call.app_name == "theoryx-test-probe"
    assert (call.cpu, call.memory_mib, call.gpu, call.block_network) == (0.5, 256, None, True)
    assert call.timeout_s == 60 + 120                        # the processor's timeout plus a margin
    assert call.payload["timeout"] == 60.0
    recipe = call.image
    assert recipe.registry_ref is None and recipe.build_args == {}
    assert recipe.dockerfile is not None and Path(recipe.dockerfile).name == "Dockerfile"
    meta = outcomes[0].meta
    assert meta["cpu"] == 0.5 and meta["memory_mib"] == 256 and meta["gpu"] is None
    assert 0 < meta["compute_seconds"] < 60
    assert ModalAdapter.bills_compute is True


def test_gpu_count_is_any_gpu_type(registry: Path, home: Path, fake: FakeModal) -> None:
    run(registry, home, {"mode": "hello"}, ref="test/gpu@1")
    assert fake.calls[0].gpu == "any:2"


def test_nonzero_exit_is_processor_failed(registry: Path, home: Path, fake: FakeModal) -> None:
    with pytest.raises(ProcessorFailed) as info:
        run(registry, home, {"mode": "fail"})
    assert info.value.code == "ERR_PROCESSOR_FAILED"
    assert "exit code 3" in info.value.message and "something broke" in info.value.message


def test_timeout_in_the_container_is_err_timeout(registry: Path, home: Path, fake: FakeModal) -> None:
    t0 = time.monotonic()
    with pytest.raises(ExecutionTimeout) as info:
        run(registry, home, {"mode": "sleep"}, adapter_options={"timeout": 1})
    assert info.value.code == "ERR_TIMEOUT"
    assert "timed out after 1s" in info.value.message
    assert time.monotonic() - t0 < 20
    assert info.value.execution_id is not None
    rec = executions.get(open_stores(home).db, info.value.execution_id)
    assert blob(home, rec.stdout_cid) == b"going to sleep\n"          # the logs up to the kill


def test_modal_killing_the_function_at_its_timeout_is_err_timeout(registry: Path, home: Path,
                                                                   fake: FakeModal) -> None:
    fake.function_timeout_s = 1.0
    with pytest.raises(ExecutionTimeout) as info:
        run(registry, home, {"mode": "sleep"})
    assert "Modal stopped the function at its timeout" in info.value.message


def test_modal_reporting_oom_is_err_oom(registry: Path, home: Path, fake: FakeModal) -> None:
    import modal.exception

    fake.error = modal.exception.RemoteError("Task was killed: OOM (memory limit of 256 MiB exceeded)")
    with pytest.raises(OutOfMemory) as info:
        run(registry, home, {"mode": "hello"})
    assert info.value.code == "ERR_OOM"


def test_modal_errors_are_mapped_at_the_edge(registry: Path, home: Path, fake: FakeModal) -> None:
    import modal.exception

    fake.error = modal.exception.AuthError("Token ID is malformed")
    with pytest.raises(ModalAuthError) as auth:
        run(registry, home, {"mode": "hello"})
    assert "modal token new" in auth.value.message
    fake.error = modal.exception.ConnectionError("Could not connect to the Modal server")
    with pytest.raises(ModalUnreachable):
        run(registry, home, {"mode": "hello"})


def test_secret_reaches_the_function_only_through_the_secret(registry: Path, home: Path, fake: FakeModal,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_SECRET", SECRET)
    res = run(registry, home, {"mode": "secret"}, ref="test/secret@1")
    body = json.loads(output(home, res, "out.json"))
    assert body["sha"] == hashlib.sha256(SECRET.encode()).hexdigest()      # the processor saw it
    call = fake.calls[0]
    assert call.secrets == {"PROBE_SECRET": SECRET}                         # ... through the Secret
    assert call.payload["secret_names"] == ["PROBE_SECRET"]
    assert SECRET.encode() not in fake.payloads[0]                          # never in the payload
    assert SECRET not in repr(call)
    assert SECRET.encode() not in blob(home, res.record.action_cid)         # nor in the memo key
    assert blob(home, res.record.stdout_cid) == b"the secret is [REDACTED]\n"


def test_stream_forwards_chunks_as_they_come(registry: Path, home: Path, streaming_fake: StreamingFakeModal) -> None:
    chunks: list[tuple[float, str, bytes]] = []
    run(registry, home, {"mode": "stream"}, stream=lambda name, data: chunks.append((time.monotonic(), name, data)))
    stdout = [(t, d) for t, n, d in chunks if n == "stdout"]
    assert b"".join(d for _, d in stdout) == b"tick 0\ntick 1\ntick 2\n"
    assert len(stdout) >= 2 and stdout[-1][0] - stdout[0][0] > 0.5          # live, not after the fact


def test_stream_without_a_generator_boundary_comes_after_the_fact(registry: Path, home: Path,
                                                                   fake: FakeModal) -> None:
    chunks: list[tuple[str, bytes]] = []
    res = run(registry, home, {"mode": "stream"}, stream=lambda name, data: chunks.append((name, data)))
    assert chunks == [("stdout", b"tick 0\ntick 1\ntick 2\n")]
    assert blob(home, res.record.stdout_cid) == b"tick 0\ntick 1\ntick 2\n"


def test_streamed_secrets_are_scrubbed(registry: Path, home: Path, streaming_fake: StreamingFakeModal,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_SECRET", SECRET)
    chunks: list[bytes] = []
    run(registry, home, {"mode": "secret"}, ref="test/secret@1", stream=lambda name, data: chunks.append(data))
    assert b"".join(chunks) == b"the secret is [REDACTED]\n"


@pytest.mark.parametrize(("mode", "reason"), [
    ("symlink", "symbolic links are not allowed"),
    ("hardlink", "hard links are not allowed"),
])
def test_outputs_are_judged_as_under_local(registry: Path, home: Path, fake: FakeModal, mode: str,
                                           reason: str) -> None:
    with pytest.raises(OutputRejected) as info:
        run(registry, home, {"mode": mode})
    assert reason in info.value.message


def test_outputs_over_the_cap_are_rejected_without_their_bytes(registry: Path, home: Path, fake: FakeModal) -> None:
    with pytest.raises(OutputRejected) as info:
        run(registry, home, {"mode": "big"}, ref="test/tiny@1")
    assert "more than 4096 bytes" in info.value.message
    (entry,) = fake.responses[0]["outputs"]
    assert entry["size"] == 5000 and entry["data"] is None


def test_executable_bit_survives_the_trip(registry: Path, home: Path, fake: FakeModal) -> None:
    res = run(registry, home, {"mode": "exec"})
    assert output(home, res, "tool.sh") == b"#!/bin/sh\n"
    assert fake.responses[0]["outputs"][0]["mode"] & 0o111


def test_unknown_adapter_option_is_a_usage_error(registry: Path, home: Path, fake: FakeModal) -> None:
    with pytest.raises(UsageError) as info:
        run(registry, home, {"mode": "hello"}, adapter_options={"region": "eu"})
    assert "unknown modal adapter option(s): region" in info.value.message
    assert fake.calls == []


def test_local_only_base_image_is_refused_before_calling_modal(registry: Path, home: Path, fake: FakeModal,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "theoryx/python-base:bookworm")
    with pytest.raises(ImageNotFound) as info:
        run(registry, home, {"mode": "hello"})
    assert "Modal's builder cannot pull" in info.value.message
    assert fake.calls == []


def test_local_and_modal_share_memo_keys(registry: Path, home: Path, fake: FakeModal,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.spec.context import env_identity, image_identity
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    monkeypatch.setenv("THEORYX_BASE_IMAGE", "python:3.11-slim")
    spec = Registry.from_option(str(registry)).load(Ref.parse("test/probe@1"), open_stores(home).db)
    local, modal = adapters.env_class("local"), adapters.env_class("modal")
    assert local == modal == "container"
    assert image_identity(spec, local)[0] == image_identity(spec, modal)[0]
    assert env_identity(local) == env_identity(modal)
    first = run(registry, home, {"mode": "hello"})
    assert fake.calls[0].image.build_args == {"BASE_IMAGE": "python:3.11-slim"}
    # the modal result answers the same request on local: a hit, so Docker is never needed
    again = run(registry, home, {"mode": "hello"}, adapter="local")
    assert again.cache == "hit" and again.memo_key == first.memo_key
    assert again.record.source_execution == first.execution_id
    mocked = run(registry, home, {"mode": "hello"}, adapter="mock")
    assert mocked.memo_key != first.memo_key


def test_build_forces_a_rebuild_on_modal(registry: Path, home: Path, fake: FakeModal) -> None:
    run(registry, home, {"mode": "hello"}, build=True)
    assert fake.calls[0].image.force_build is True
