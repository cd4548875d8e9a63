"""The local adapter against the real engine: contract, sandbox, failures, cache, secrets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import output

import theoryx
from cas import Store
from theoryx.errors import (
    AdapterError,
    ExecutionTimeout,
    ImageNotFound,
    OutOfMemory,
    OutputRejected,
    ProcessorFailed,
    UsageError,
)
from theoryx.pipeline.result import RunResult

pytestmark = pytest.mark.docker


def run(registry: Path, home: Path, inputs: dict[str, Any], ref: str = "test/probe@1", **kw: Any) -> RunResult:
    kw.setdefault("adapter", "local")
    return theoryx.run(ref, inputs=inputs, home=home, registry=str(registry), **kw)


def out_json(home: Path, result: RunResult) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(output(home, result, "out.json"))
    return body


def files_containing(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for dirpath, _, filenames in os.walk(root):
        for fn in filenames:
            path = Path(dirpath) / fn
            if not path.is_symlink() and needle in path.read_bytes():
                hits.append(path)
    return hits


def test_success_runs_under_the_contract_and_sandbox(registry: Path, home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("attached text\n")
    res = run(registry, home, {"mode": "hello", "file": {"$attach": "doc"}}, attachments={"doc": doc})
    assert res.cache == "miss"
    body = out_json(home, res)
    assert body["uid"] == 10001 and body["gid"] == 10001
    assert body["net"] == ["lo"] and body["build_net"] == ["lo"]      # no network at run or build time
    assert int(body["cap_eff"], 16) == 0 and body["no_new_privs"] == "1"
    assert body["write_root"] == "EROFS" and body["write_tmp"] == "ok"
    assert body["file_text"] == "attached text\n"
    assert body["inputs_json"]["file"]["$artifact"].startswith("/artifacts/inputs/b3:")
    env = body["env"]
    assert env["THEORYX_INPUTS"] == "/theoryx/inputs.json"
    assert env["THEORYX_WRITE_PREFIX"] == "/artifacts/outputs/"
    assert env["THEORYX_RESULT"] == "/theoryx/result/result.json"
    assert env["THEORYX_EXECUTION_ID"] == res.execution_id and env["THEORYX_REF"] == "test/probe@1"
    assert env["THEORYX_SEED"] == "0" and env["THEORYX_STREAM"] == "0"
    assert output(home, res, "sub/note.txt") == b"nested\n"
    assert res.record.usage == {"units": 3}
    cas = Store(home / "cas-v1")
    assert res.record.stdout_cid is not None and res.record.stderr_cid is not None
    assert cas.read(res.record.stdout_cid) == b"hello on stdout\n"
    assert cas.read(res.record.stderr_cid) == b"hello on stderr\n"
    for o in res.outputs:      # moved into the CAS, handed back to theoryx's user, sealed
        st = cas.path(o.cid).stat()
        assert st.st_mode & 0o777 == 0o444
        assert st.st_uid == os.geteuid()
    assert not any((home / "work-v1").iterdir())


def test_inputs_are_readable_by_the_container_user_under_a_strict_umask(
        registry: Path, home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("private text\n")
    old = os.umask(0o077)
    try:
        res = run(registry, home, {"mode": "hello", "file": {"$attach": "doc"}, "n": 13}, attachments={"doc": doc})
    finally:
        os.umask(old)
    assert out_json(home, res)["file_text"] == "private text\n"


def test_nonzero_exit_is_processor_failed_with_stderr_tail(registry: Path, home: Path) -> None:
    with pytest.raises(ProcessorFailed) as ei:
        run(registry, home, {"mode": "fail"})
    assert ei.value.code == "ERR_PROCESSOR_FAILED"
    assert "exit code 7" in ei.value.message
    assert "boom: something went wrong" in ei.value.message


def test_memory_limit_kill_is_err_oom(registry: Path, home: Path) -> None:
    with pytest.raises(OutOfMemory) as ei:
        run(registry, home, {"mode": "oom"}, ref="test/tight@1")
    assert ei.value.code == "ERR_OOM" and "64 MiB" in ei.value.message


def test_timeout_option_kills_the_container_with_err_timeout(registry: Path, home: Path) -> None:
    run(registry, home, {"mode": "hello"})          # image built outside the timed part
    t0 = time.monotonic()
    with pytest.raises(ExecutionTimeout) as ei:
        run(registry, home, {"mode": "sleep", "seconds": 60}, adapter_options={"timeout": 2})
    assert time.monotonic() - t0 < 15
    assert ei.value.code == "ERR_TIMEOUT" and "after 2s" in ei.value.message
    assert "sleeping" not in ei.value.message       # stdout is not the stderr tail


def test_fork_bomb_is_bounded_by_the_pids_limit(registry: Path, home: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(ProcessorFailed) as ei:
        run(registry, home, {"mode": "forkbomb"}, ref="test/tight@1")
    assert time.monotonic() - t0 < 30
    assert "exit code 3" in ei.value.message
    assert "Resource temporarily unavailable" in ei.value.message


def test_inputs_are_read_only(registry: Path, home: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("keep me\n")
    res = run(registry, home, {"mode": "write_inputs", "file": {"$attach": "doc"}}, attachments={"doc": doc})
    body = out_json(home, res)
    assert body["create_new"] == "EROFS" and body["chmod"] == "EROFS"
    assert body["append_existing"] in ("EROFS", "EACCES") and body["inputs_json"] in ("EROFS", "EACCES")
    assert doc.read_text() == "keep me\n"


def test_no_network_but_loopback_under_none(registry: Path, home: Path) -> None:
    res = run(registry, home, {"mode": "network", "host": "1.1.1.1", "port": 53})
    body = out_json(home, res)
    assert body["net"] == ["lo"]
    assert body["connect"] in ("ENETUNREACH", "EHOSTUNREACH", "ECONNREFUSED")


def test_network_host_option_reaches_the_hosts_loopback(registry: Path, home: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        res = run(registry, home, {"mode": "network", "port": port}, ref="test/net@1",
                  adapter_options={"network": "host"})
    assert out_json(home, res)["connect"] == "ok"


def test_symlink_to_a_canary_outside_is_rejected_and_never_stored(
        registry: Path, home: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    secret_bytes = b"CANARY-" + os.urandom(8).hex().encode()
    canary.write_bytes(secret_bytes)
    with pytest.raises(OutputRejected) as ei:
        run(registry, home, {"mode": "symlink", "target": str(canary)})
    assert ei.value.code == "ERR_OUTPUT_REJECTED"
    assert "/artifacts/outputs/leak.txt" in ei.value.message and "symbolic link" in ei.value.message
    assert files_containing(home, secret_bytes) == []


@pytest.mark.parametrize("fail", [False, True])
def test_secret_value_appears_nowhere_in_the_home(
        registry: Path, home: Path, monkeypatch: pytest.MonkeyPatch, fail: bool) -> None:
    value = "sk-canary-" + os.urandom(12).hex()
    monkeypatch.setenv("PROBE_SECRET", value)
    streamed: list[tuple[str, bytes]] = []
    try:
        res = run(registry, home, {"mode": "secret", "fail": fail}, ref="test/secret@1",
                  stream=lambda ch, data: streamed.append((ch, data)))
        assert out_json(home, res) == {"secret_len": len(value)}    # it did reach the container
        message = ""
    except ProcessorFailed as exc:
        assert fail
        message = exc.message
    assert value not in message
    if fail:
        assert "[REDACTED]" in message
    for channel in ("stdout", "stderr"):
        text = b"".join(d for ch, d in streamed if ch == channel)
        assert value.encode() not in text
        assert b"[REDACTED]" in text
    assert files_containing(home, value.encode()) == []


def test_second_local_run_is_a_cache_hit(registry: Path, home: Path) -> None:
    first = run(registry, home, {"mode": "hello", "n": 1})
    second = run(registry, home, {"mode": "hello", "n": 1})
    assert (first.cache, second.cache) == ("miss", "hit")
    assert second.outputs == first.outputs


def test_mock_and_local_results_never_answer_each_other(registry: Path, home: Path) -> None:
    inputs = {"mode": "hello", "n": 2}
    assert run(registry, home, inputs, adapter="mock").cache == "miss"
    local = run(registry, home, inputs)
    assert local.cache == "miss"
    assert out_json(home, local)["uid"] == 10001
    assert run(registry, home, inputs, adapter="mock").cache == "hit"
    assert run(registry, home, inputs).cache == "hit"


def test_streaming_delivers_output_while_the_processor_runs(registry: Path, home: Path) -> None:
    arrivals: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    res = run(registry, home, {"mode": "stream", "lines": 4, "gap": 0.4},
              stream=lambda ch, data: arrivals.append((time.monotonic() - t0, data)))
    text = b"".join(d for _, d in arrivals)
    assert text == b"line 0\nline 1\nline 2\nline 3\n"
    assert arrivals[0][0] < arrivals[-1][0] - 0.8       # the first line came well before the last
    assert res.record.stdout_cid is not None
    assert Store(home / "cas-v1").read(res.record.stdout_cid) == text


def test_unknown_adapter_option_is_a_usage_error(registry: Path, home: Path) -> None:
    with pytest.raises(UsageError, match="unknown local adapter option"):
        run(registry, home, {"mode": "hello"}, adapter_options={"timout": 3})


def test_missing_base_image_is_image_not_found_and_nothing_pulled(
        registry: Path, home: Path, monkeypatch: pytest.MonkeyPatch, docker_client: Any) -> None:
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "theoryx/no-such-base:1")
    with pytest.raises(ImageNotFound) as ei:
        run(registry, home, {"mode": "hello"})
    assert ei.value.code == "ERR_IMAGE_NOT_FOUND"
    assert "bash scripts/base-image.sh" in ei.value.message
    assert "THEORYX_BASE_IMAGE=" in ei.value.message
    assert not docker_client.images.list(name="theoryx/no-such-base")


def test_pinned_image_missing_locally_is_image_not_found(registry: Path, home: Path) -> None:
    with pytest.raises(ImageNotFound, match="never pulls"):
        run(registry, home, {}, ref="test/pinned@1")


def test_gpu_request_without_a_gpu_runtime_is_a_clear_error(
        registry: Path, home: Path, docker_client: Any) -> None:
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has a GPU runtime")
    with pytest.raises(AdapterError, match=r"requests a GPU .* no GPU runtime"):
        run(registry, home, {"mode": "hello"}, ref="test/gpu@1")


def test_build_flag_rebuilds_the_image(registry: Path, home: Path, docker_client: Any) -> None:
    from theoryx.adapters.local.images import ensure
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry((registry,)).load(Ref.parse("test/probe@1"))
    before = ensure(docker_client, spec, home / "vendor-v1")
    res = run(registry, home, {"mode": "hello", "n": 4}, build=True)
    assert res.cache == "miss"
    after = ensure(docker_client, spec, home / "vendor-v1")
    assert after.name == before.name and not after.built
    assert after.id != before.id                    # --build bypasses the layer cache


def test_outputs_under_a_per_execution_write_prefix(registry: Path, home: Path) -> None:
    res = run(registry, home, {"mode": "hello", "n": 12}, write_prefix="/artifacts/outputs/{execution_id}/")
    prefix = f"/artifacts/outputs/{res.execution_id}/"
    assert out_json(home, res)["env"]["THEORYX_WRITE_PREFIX"] == prefix
    assert sorted(o.path for o in res.outputs) == [prefix + "out.json", prefix + "sub/note.txt"]


def test_leftover_container_of_a_dead_owner_is_removed_by_the_next_run(
        registry: Path, home: Path, docker_client: Any, base_image: str) -> None:
    from theoryx.adapters.local.adapter import LABEL_MANAGED, LABEL_OWNER, owner_label

    host, boot, _, _ = owner_label().split("/")
    dead = f"{host}/{boot}/{2**22 + 12345}/1"          # beyond pid_max: never a live process
    alive = owner_label()
    labels = [{LABEL_MANAGED: "1", LABEL_OWNER: owner} for owner in (dead, alive)]
    made = [docker_client.api.create_container(base_image, ["true"], labels=lab)["Id"] for lab in labels]
    try:
        run(registry, home, {"mode": "hello", "n": 5})
        remaining = {c["Id"] for c in docker_client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=1"})}
        assert made[0] not in remaining         # its owner is gone
        assert made[1] in remaining             # its owner (us) still runs: not touched
    finally:
        for cid in made:
            if docker_client.api.containers(all=True, filters={"id": cid}):
                docker_client.api.remove_container(cid, force=True)


@pytest.mark.parametrize(("levels", "width"), [(3000, 1), (20, 250)])
def test_a_tree_too_deep_or_too_long_is_rejected_and_cleaned_up(
        registry: Path, home: Path, cli: Any, levels: int, width: int) -> None:
    """3,000 levels (os.walk and rmtree recurse past Python's limit) or 20 names of 250 characters
    (a path past PATH_MAX): ERR_OUTPUT_REJECTED, recorded, the workspace removed, and gc, verify
    and du still work (they crashed with ERR_INTERNAL on every call while it was left)."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    with pytest.raises(OutputRejected) as ei:
        run(registry, home, {"mode": "deep", "levels": levels, "width": width})
    assert ("deeper than" in ei.value.message) or ("more than" in ei.value.message), ei.value.message
    assert executions.get(open_stores(home).db, ei.value.execution_id or "") is not None
    assert not list((home / "work-v1").iterdir())
    for argv in (["gc", "--grace", "0s"], ["verify"], ["du"]):
        res = cli(*argv)
        assert res.exit_code == 0 and "internal error" not in res.output, (argv, res.output)
