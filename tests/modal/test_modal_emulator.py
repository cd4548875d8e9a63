"""The whole remote flow of the modal adapter, for real, on the Sandbox/Volume emulator.

The emulator (tests/modal/emulator.py) stands in for ``modal.Sandbox``/``Volume``/``Image``/
``Secret``/``App`` and binds every call to the installed SDK's signatures; the processor runs in a
real container with the same image, command, mounts and limits. Each test prints its figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from modal._utils.name_utils import check_tag_dict
from modal_testing import add_spec
from theoryx_testing import REPO

import theoryx
from cas import Store
from theoryx.adapters.modal import adapter as modal_adapter
from theoryx.adapters.modal.blobs import CAS_MOUNT, BlobVolume
from theoryx.adapters.modal.sandbox import ENV_STAGE1, IDLE, IMAGE_ENV, SANDBOX_MARGIN_S
from theoryx.errors import (
    ExecutionTimeout,
    OutOfMemory,
    OutputRejected,
    ProcessorFailed,
    TheoryxError,
)

pytestmark = pytest.mark.docker


def run(registry: Path, home: Path, inputs: dict[str, Any], ref: str = "test/probe@1", **kw: Any) -> theoryx.RunResult:
    return theoryx.run(ref, inputs=inputs, adapter="modal", home=home, registry=str(registry), **kw)


def fails(registry: Path, home: Path, inputs: dict[str, Any], ref: str = "test/probe@1", **kw: Any) -> TheoryxError:
    with pytest.raises(TheoryxError) as info:
        run(registry, home, inputs, ref, **kw)
    return info.value


def log(home: Path, cid: str | None) -> bytes:
    return Store(home / "cas-v1").read(cid) if cid else b""


def processor_execs(emulator: Any) -> list[dict[str, Any]]:
    """The processor's execs (through the environment-setting wrapper), not theoryx's helpers."""
    return [c for c in emulator.called("Sandbox.exec") if c["args"][2:3] == (ENV_STAGE1,)]


def test_the_contract_holds_in_the_sandbox(registry: Path, home: Path, emulator: Any, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("attached text\n")
    res = run(registry, home, {"mode": "hello", "file": {"$attach": "f"}}, attachments={"f": str(note)})
    body = res.output("out.json").json()
    print(json.dumps({k: body[k] for k in ("uid", "cwd", "home", "net", "write_input")}))
    art = body["inputs"]["file"]["$artifact"]
    assert art.startswith("/artifacts/inputs/b3:") and art.endswith("/note.txt")
    assert body["file_text"] == "attached text\n" and body["write_input"] == "PermissionError"
    assert body["uid"] == 10001 and body["cwd"] == "/app" and body["home"] == "/tmp"
    assert body["net"] == ["lo"], "runtime.network: false blocks the network"
    assert body["env"]["THEORYX_INPUTS"] == "/theoryx/inputs.json"
    assert body["env"]["THEORYX_WRITE_PREFIX"] == "/artifacts/outputs/" and body["env"]["THEORYX_STREAM"] == "0"
    assert res.output("sub/note.txt").text() == "nested\n"
    assert log(home, res.record.stdout_cid) == b"hello on stdout\n"
    assert log(home, res.record.stderr_cid) == b"hello on stderr\n"
    assert res.record.usage == {"units": 3} and res.record.cost_micros >= 250_000

    (create,) = emulator.called("Sandbox.create")
    assert create["args"] == IDLE
    assert create["cpu"] == (0.5, 0.5) and create["memory"] == (256, 256), "request = limit"
    assert create["block_network"] is True and create["timeout"] == 60 + SANDBOX_MARGIN_S
    assert create["workdir"] == "/app" and create["gpu"] is None
    tags = create["tags"]
    assert tags["theoryx.managed"] == "1" and tags["theoryx.ref"] == "test-probe-1"
    assert tags["theoryx.execution"] == res.record.execution_id and tags["theoryx.owner"] == modal_adapter.owner_tag()
    check_tag_dict(tags)          # the SDK's own rule for tag keys and values
    (mount,) = create["volumes"].items()
    assert mount[0] == CAS_MOUNT and mount[1].is_read_only and mount[1].name == "theoryx-cas"
    image = create["image"]
    assert image.lines[:2] == ("USER root", "RUN mkdir -p /artifacts /theoryx && chmod 1777 /artifacts /theoryx")
    assert image.lines[2].startswith('RUN ["/bin/sh", "-c", "unset ') and IMAGE_ENV in image.lines[2]
    assert image.lines[3:] == ("USER 10001:10001", "ENTRYPOINT []")
    (built,) = emulator.called("Image.build")
    assert built["self"] is image and built["app"].name == "theoryx-test-probe", "built before the Sandbox"
    processor = processor_execs(emulator)
    assert len(processor) == 1 and processor[0]["workdir"] == "/app" and processor[0]["secrets"] == []
    assert processor[0]["args"][-3:] == ("--", "python3", "/app/run.py") and "HOME=/tmp" in processor[0]["args"]
    assert processor[0]["env"] is None and processor[0]["text"] is False
    assert len(emulator.called("Sandbox.terminate")) >= 1 and emulator.sandboxes == []


def test_root_in_the_sandbox_works_too(registry: Path, home: Path, emulator: Any) -> None:
    """Modal's docs do not say whether USER is honoured: both answers are handled."""
    emulator.run_as_root = True
    body = run(registry, home, {"mode": "hello"}).output("out.json").json()
    print(f"uid {body['uid']}")
    assert body["uid"] == 0


def test_only_missing_blobs_are_uploaded_in_one_batch(registry: Path, home: Path, emulator: Any,
                                                       tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("shared\n" * 1000)
    att = {"attachments": {"f": str(data)}}
    run(registry, home, {"mode": "hello", "file": {"$attach": "f"}, "n": 1}, **att)
    first = list(emulator.uploads)
    assert len(first) == 2 and len(emulator.called("Volume.batch_upload")) == 1   # attachment + inputs.json
    run(registry, home, {"mode": "hello", "file": {"$attach": "f"}, "n": 2}, **att)
    second = emulator.uploads[len(first):]
    assert len(second) == 1 and second[0][2] < 1000, "only the new inputs.json travels"
    BlobVolume.forget()                    # a new process: it asks the Volume, which has the blob
    run(registry, home, {"mode": "hello", "file": {"$attach": "f"}, "n": 2}, no_cache=True, **att)
    third = emulator.uploads[len(first) + len(second):]
    print(f"uploads per run: {len(first)}, {len(second)}, {len(third)}")
    assert third == []


def test_nonzero_exit_is_processor_failed(registry: Path, home: Path, emulator: Any) -> None:
    err = fails(registry, home, {"mode": "fail"})
    print(err.message)
    assert isinstance(err, ProcessorFailed) and "exit code 7" in err.message
    assert "boom: something went wrong" in err.message and emulator.sandboxes == []


def test_a_process_killed_without_oom_is_not_oom(registry: Path, home: Path, emulator: Any) -> None:
    err = fails(registry, home, {"mode": "killed"})
    print(err.message)
    assert isinstance(err, ProcessorFailed) and "exit code 137" in err.message


def test_memory_limit_kill_is_err_oom(registry: Path, home: Path, emulator: Any) -> None:
    err = fails(registry, home, {"mode": "oom"}, ref="test/tight@1")
    print(err.message)
    assert isinstance(err, OutOfMemory) and err.code == "ERR_OOM" and "64 MiB" in err.message


def test_a_memory_kill_that_ends_the_whole_sandbox_is_err_oom_too(registry: Path, home: Path, emulator: Any) -> None:
    """The other reading of Modal's docs: the container, not the process, is killed."""
    emulator.kill_ends_sandbox = True
    err = fails(registry, home, {"mode": "oom"}, ref="test/tight@1")
    print(err.message)
    assert isinstance(err, OutOfMemory) and "the one reason Modal documents" in err.message


def test_timeout_terminates_the_sandbox(registry: Path, home: Path, emulator: Any) -> None:
    seen: list[bytes] = []
    t0 = time.monotonic()
    err = fails(registry, home, {"mode": "sleep", "seconds": 30}, ref="test/short@1",
                stream=lambda _name, chunk: seen.append(chunk))
    took = time.monotonic() - t0
    print(f"ERR_TIMEOUT after {took:.1f}s (timeout 2s): {err.message.splitlines()[0]}")
    assert isinstance(err, ExecutionTimeout) and err.code == "ERR_TIMEOUT" and "after 2s" in err.message
    assert took < 20 and emulator.sandboxes == []
    assert b"sleeping" in b"".join(seen), "what it wrote before the kill came through"


def test_timeout_option_and_a_plan_reserve_the_worst_case(registry: Path, home: Path, emulator: Any) -> None:
    from theoryx.budget import ledger
    from theoryx.budget.pricing import MODAL_SANDBOX_CPU_CORE_SECOND, MODAL_SANDBOX_MEMORY_GIB_SECOND
    from theoryx.store.handle import open_stores

    err = fails(registry, home, {"mode": "sleep", "seconds": 30}, adapter_options={"timeout": 1.5}, plan="p")
    assert isinstance(err, ExecutionTimeout) and "after 1.5s" in err.message
    res = run(registry, home, {"mode": "hello"}, plan="p")
    events = [e for _, e in ledger.events(open_stores(home).db, "p")]
    reserves = [e for e in events if e["kind"] == "reserve"]
    settles = [e for e in events if e["kind"] == "settle"]
    rate = Decimal("0.5") * MODAL_SANDBOX_CPU_CORE_SECOND + Decimal(256) / 1024 * MODAL_SANDBOX_MEMORY_GIB_SECOND
    margin = modal_adapter.ModalAdapter.billing_margin_s
    worst = [int((rate * (t + margin) * 1_000_000).to_integral_value("ROUND_CEILING")) for t in (Decimal("1.5"), 60)]
    assert [r["estimate"]["compute"] for r in reserves] == worst
    cost = settles[-1]["cost"]
    print(f"reserved compute {worst} micro-USD; cost {res.record.cost_micros} = {cost}")
    assert cost["reported"] == 250_000 and 0 < cost["compute"] < worst[1], "compute apart from the report"
    assert res.record.cost_micros == cost["reported"] + cost["compute"]


def test_stream_forwards_chunks_as_they_come(registry: Path, home: Path, emulator: Any) -> None:
    seen: list[tuple[float, str, bytes]] = []
    t0 = time.monotonic()
    res = run(registry, home, {"mode": "stream", "lines": 4, "gap": 0.5},
              stream=lambda name, chunk: seen.append((time.monotonic() - t0, name, chunk)))
    end = time.monotonic() - t0
    text = b"".join(c for _, n, c in seen if n == "stdout").decode()
    first = next(t for t, _, c in seen if b"tick 0" in c)
    last = next(t for t, _, c in seen if b"tick 3" in c)
    print(f"tick 0 at {first:.2f}s, tick 3 at {last:.2f}s, run ended at {end:.2f}s")
    assert text == "tick 0\ntick 1\ntick 2\ntick 3\n" and last - first > 1.0
    assert log(home, res.record.stdout_cid) == text.encode()


def test_secret_reaches_only_the_processor_and_is_scrubbed(registry: Path, home: Path, emulator: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    value = "modal-secret-value-42"
    monkeypatch.setenv("PROBE_SECRET", value)
    streamed: list[bytes] = []
    res = run(registry, home, {"mode": "secret"}, ref="test/secret@1", stream=lambda _n, c: streamed.append(c))
    assert res.output("out.json").json()["sha"] == hashlib.sha256(value.encode()).hexdigest()
    stored = log(home, res.record.stdout_cid)
    print(stored)
    assert value.encode() not in stored and b"[REDACTED]" in stored
    assert value.encode() not in b"".join(streamed)
    (create,) = emulator.called("Sandbox.create")
    assert not create.get("secrets") and not create.get("env"), "the Sandbox itself holds no secret"
    processor = processor_execs(emulator)
    assert [s.values for s in processor[0]["secrets"]] == [{"PROBE_SECRET": value}]
    assert value not in json.dumps({k: str(v) for k, v in processor[0].items() if k != "secrets"})


@pytest.mark.parametrize(("kind", "says"), [
    ("symlink", "symbolic links are not allowed"),
    ("hardlink", "hard links are not allowed"),
    ("fifo", "a FIFO is not a regular file"),
    ("setuid", "setuid/setgid files are not allowed"),
    ("relink", "write prefix by a symbolic link"),
])
def test_outputs_are_judged_as_under_local(registry: Path, home: Path, emulator: Any, kind: str, says: str) -> None:
    err = fails(registry, home, {"mode": "special", "kind": kind})
    print(f"{kind}: {err.message}")
    assert isinstance(err, OutputRejected) and says in err.message


def test_an_executable_output_is_accepted(registry: Path, home: Path, emulator: Any) -> None:
    res = run(registry, home, {"mode": "special", "kind": "exec"})
    assert res.output("tool.sh").text() == "#!/bin/sh\n", "an executable file is an ordinary output"


@pytest.mark.parametrize(("inputs", "says"), [
    ({"mode": "special", "kind": "many", "count": 10}, "more than 3 files"),
    ({"mode": "big", "size": 5000}, "more than 4096 bytes"),
])
def test_outputs_over_the_caps_are_rejected_as_under_local(registry: Path, home: Path, emulator: Any,
                                                           inputs: dict[str, Any], says: str) -> None:
    err = fails(registry, home, inputs, ref="test/tiny@1")
    print(err.message)
    assert isinstance(err, OutputRejected) and says in err.message


@pytest.mark.slow
def test_local_and_modal_never_answer_each_other(registry: Path, home: Path, emulator: Any) -> None:
    """The environment classes differ (container vs modal): the same request misses across
    adapters and hits within each."""
    inputs = {"mode": "hello"}
    local = theoryx.run("test/probe@1", inputs=inputs, adapter="local", home=home, registry=str(registry),
                        adapter_options={"network": "none"})
    modal1 = run(registry, home, inputs)
    modal2 = run(registry, home, inputs)
    local2 = theoryx.run("test/probe@1", inputs=inputs, adapter="local", home=home, registry=str(registry))
    print(f"local {local.cache}, modal {modal1.cache}, modal {modal2.cache}, local {local2.cache}")
    assert (local.cache, modal1.cache, modal2.cache, local2.cache) == ("miss", "miss", "hit", "hit")
    assert local.memo_key != modal1.memo_key == modal2.memo_key
    pre = json.loads(Store(home / "cas-v1").read(modal1.record.action_cid or ""))
    assert pre["env"]["class"] == "modal"


@pytest.mark.slow
def test_map_fans_out_with_each_blob_uploaded_once(registry: Path, home: Path, emulator: Any, tmp_path: Path) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("the same attachment for every item\n" * 100)
    items = [{"inputs": {"mode": "item", "n": i, "file": {"$attach": "f"}}, "attachments": {"f": str(shared)}}
             for i in range(8)]
    peak = [0]

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], len(emulator.sandboxes))
            time.sleep(0.05)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    t0 = time.monotonic()
    with theoryx.Session(home) as session:
        results = list(session.map("test/probe@1", items, jobs=8, adapter="modal", registry=str(registry)))
    stop.set()
    took = time.monotonic() - t0
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert sorted(r.result.output("out.json").json()["n"] for r in results if r.result) == list(range(8))
    size = shared.stat().st_size
    shared_uploads = [u for u in emulator.uploads if u[2] == size]
    print(f"8 items in {took:.1f}s, {peak[0]} Sandboxes at once, {len(emulator.uploads)} uploads "
          f"({len(shared_uploads)} of the shared attachment), {len(emulator.called('Volume.batch_upload'))} batches")
    assert len(shared_uploads) == 1 and len(emulator.uploads) == 9
    assert len(emulator.called("Sandbox.create")) == 8 and peak[0] >= 2 and emulator.sandboxes == []


GIB_SCRIPT = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import pytest
from emulator import Emulator
import docker, theoryx
from theoryx.adapters.local import docker_client
import threading
peak = {"RssAnon": 0, "RssFile": 0}
stop = threading.Event()
def sample():
    while not stop.is_set():
        for line in open("/proc/self/status"):
            key = line.split(":")[0]
            if key in peak:
                peak[key] = max(peak[key], int(line.split()[1]) // 1024)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
mp = pytest.MonkeyPatch()
emu = Emulator(__import__("pathlib").Path(sys.argv[3]), docker_client.connect(timeout=5)).install(mp)
t0 = time.monotonic()
res = theoryx.run("test/probe@1", inputs={"mode": "big", "size": int(sys.argv[6]), "file": {"$attach": "f"}},
                  attachments={"f": sys.argv[7]}, adapter="modal", home=sys.argv[4], registry=sys.argv[5])
took = time.monotonic() - t0
stop.set()
emu.close()
big = [o for o in res.outputs if o.path.endswith("big.bin")][0]
print(json.dumps({"took_s": round(took, 1), "big_size": big.size, "out": res.output("out.json").json(),
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                  "peak_anon_mib": peak["RssAnon"], "peak_file_mib": peak["RssFile"],
                  "uploaded": sum(u[2] for u in emu.uploads)}))
"""


@pytest.mark.slow
def test_gib_attachment_and_output_travel_without_being_held_in_memory(registry: Path, home: Path, tmp_path: Path,
                                                                       docker_client: Any) -> None:
    """1 GiB in through the Volume, 1 GiB out through the tar stream, in a fresh interpreter whose
    anonymous resident memory (``RssAnon``: what theoryx holds; the file-backed part is the CAS
    hashing files through read-only maps, reclaimable) is sampled every 20 ms. The emulator's
    Docker streams run in the same process, so the figure bounds the emulator too."""
    import hashlib

    size = 1 << 30
    attachment = tmp_path / "big-in.bin"
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(attachment, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
            h.update(block)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", GIB_SCRIPT, str(REPO), str(Path(__file__).parent),
                           str(tmp_path / "emu"), str(home), str(registry), str(size), str(attachment)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    body = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(body))
    assert body["big_size"] == size and body["out"]["attachment_sha256"] == h.hexdigest()
    assert body["uploaded"] >= size
    assert body["peak_anon_mib"] < 200, f"peak anonymous RSS {body['peak_anon_mib']} MiB for 2 GiB moved"


def test_leftovers_of_dead_owners_are_terminated(registry: Path, home: Path, emulator: Any) -> None:
    from theoryx.adapters.modal import boundary
    from theoryx.adapters.modal.boundary import ImageRecipe, SandboxRequest

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive_label = modal_adapter.owner_tag()
    dead_label = modal_adapter.owner_tag(dead.pid)
    stage = registry / "processors" / "test" / "probe"
    recipe = ImageRecipe(dockerfile=str(stage / "Dockerfile"), context_dir=str(stage),
                         build_args={"BASE_IMAGE": os.environ["THEORYX_BASE_IMAGE"]})
    made = []
    for owner in (dead_label, alive_label):
        made.append(boundary.create_sandbox(SandboxRequest(
            app_name="theoryx-test", image=recipe, command=IDLE, cpu=0.25, memory_mib=64, gpu=None, timeout_s=120,
            block_network=True, workdir="/", volumes={}, tags={"theoryx.managed": "1", "theoryx.owner": owner})))
    removed = modal_adapter.remove_leftovers()
    print(f"terminated {removed}")
    assert removed == [made[0].object_id] and made[0].ended == "terminated" and made[1].ended is None
    boundary.terminate(made[1])


def test_unsupported_gpu_is_refused_before_anything_is_written(registry: Path, home: Path, emulator: Any) -> None:
    for ref, says in (("test/gpucount@1", "a count without a type"), ("test/gpubad@1", "not a GPU type"),
                      ("test/gpumany@1", "1 to 4 A10")):
        err = fails(registry, home, {"mode": "hello"}, ref=ref)
        print(f"{ref}: {err.code}: {err.message}")
        assert err.code == "ERR_MODAL_GPU" and says in err.message
    blobs = home / "cas-v1" / "blobs"
    assert emulator.calls == [], "Modal is never asked"
    assert not any(p.is_file() for p in blobs.rglob("*")) if blobs.exists() else True, "nothing stored"


def test_a_gpu_spec_asks_modal_for_its_gpus(registry: Path, home: Path, emulator: Any) -> None:
    err = fails(registry, home, {"mode": "hello"}, ref="test/gpu@1")
    (create,) = emulator.called("Sandbox.create")
    print(f"gpu={create['gpu']!r}: {err.message}")
    assert create["gpu"] == "L4:2" and err.code == "ERR_MODAL"     # the emulator has no GPUs


def test_network_spec_opens_the_network(registry: Path, home: Path, emulator: Any) -> None:
    body = run(registry, home, {"mode": "network"}, ref="test/net@1").output("out.json").json()
    (create,) = emulator.called("Sandbox.create")
    print(body)
    assert create["block_network"] is False and body["net"] != ["lo"]


def test_a_spec_with_a_shorter_log_bound_stores_head_and_tail(registry: Path, home: Path, emulator: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.adapters.logs import MASK, marker

    chatty = registry / "processors" / "test" / "probe" / "chatty.py"
    chatty.write_text(
        "import os, sys\nsecret = os.environ.get('PROBE_SECRET', '').encode()\nout = sys.stdout.buffer\n"
        "for i in range(5000):\n    out.write(b'line %06d ' % i + secret + b'\\n')\nout.flush()\n"
        "sys.stderr.buffer.write(b'e' * 10000)\n")
    (registry / "processors" / "test" / "probe" / "Dockerfile").write_text(
        (registry / "processors" / "test" / "probe" / "Dockerfile").read_text().replace(
            "COPY run.py /app/run.py", "COPY run.py chatty.py /app/"))
    ref = add_spec(registry, "chatty", "{cpu: 0.5, memory: 256, timeout: 60}",
                   "limits: {log_bytes: 4096}\nsecrets: [PROBE_SECRET]\n")
    spec_file = registry / "processors" / "test" / "chatty@1.yaml"
    spec_file.write_text(spec_file.read_text().replace('["python3", "/app/run.py"]', '["python3", "/app/chatty.py"]'))
    monkeypatch.setenv("PROBE_SECRET", "modal-secret-value-42")
    streamed: list[bytes] = []
    res = run(registry, home, {}, ref=ref, stream=lambda n, c: streamed.append(c) if n == "stdout" else None)
    whole = b"".join(b"line %06d " % i + MASK + b"\n" for i in range(5000))
    dropped = {"stdout": len(whole) - 4096, "stderr": 10000 - 4096}
    stdout = log(home, res.record.stdout_cid)
    print(f"log_truncated {res.record.log_truncated}, stored {len(stdout)} bytes of {len(whole)}")
    assert b"".join(streamed) == whole, "--stream shows everything"
    assert res.record.log_truncated == dropped
    assert stdout == whole[:2048] + marker(dropped["stdout"], "stdout", 4096) + whole[-2048:]


@pytest.mark.parametrize("cut", [0, 700])
def test_an_output_stream_cut_short_fails_and_caches_nothing(registry: Path, home: Path, emulator: Any,
                                                             cut: int) -> None:
    """tar exits 0, but the stream back lost its tail (0: all of it; 700: inside the first
    member): the run fails with ERR_MODAL_SANDBOX instead of succeeding with fewer outputs, and
    nothing is cached, so the next run executes again and gets them all."""
    emulator.cut_outputs = cut
    err = fails(registry, home, {"mode": "hello"})
    print(err.message)
    assert err.code == "ERR_MODAL_SANDBOX" and "ended before the archive did" in err.message
    emulator.cut_outputs = None
    again = run(registry, home, {"mode": "hello"})
    assert again.cache == "miss" and again.output("out.json").json()["uid"] != 0
