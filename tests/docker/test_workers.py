"""Persistent workers on the local adapter (BUILD.md, "Persistent workers"), on the real engine.

``data/textstats@1`` (shipped, deterministic) shows that a worker's result keys exactly like a
one-shot run's; the ``wprobe`` test processor (``processors/wprobe``, one image under two specs)
does what each item's ``mode`` says — crash, sleep, exhaust its memory, fail, break the protocol,
write into an earlier request's directory, count the requests it served — and reports the
container (``host``) and process that served it. After every test no container of this process
(or of a CLI it spawned) may be left: tests/conftest.py checks.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pytest
from docker_testing import cancel_when_running, cli_env, owned_containers, spawn_cli, wait_for
from theoryx_testing import REGISTRY, output

import theoryx
from theoryx.pipeline.batch import ItemResult
from theoryx.pipeline.session import Session

pytestmark = pytest.mark.docker
HERE = Path(__file__).resolve().parent
TEXTSTATS = "data/textstats@1"
WPROBE = """\
ref: test/{name}@1
image:
  dockerfile: wprobe/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {{cpu: 1, memory: 128, timeout: 60, pids: 64, tmpfs: 16}}
worker: {{protocol: jsonl, max_requests: {max_requests}}}
inputs: {{type: object}}
outputs:
  - {{path: out.json, mime: application/json, optional: true}}
"""


@pytest.fixture(scope="module")
def wregistry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with the worker probe as ``test/wprobe@1`` (max_requests 100),
    ``test/wrecycle@1`` (max_requests 2) and ``test/woneshot@1`` (no worker)."""
    root = tmp_path_factory.mktemp("wregistry")
    pdir = root / "processors" / "test"
    pdir.mkdir(parents=True)
    shutil.copytree(HERE / "processors" / "wprobe", pdir / "wprobe", ignore=shutil.ignore_patterns("__pycache__"))
    (pdir / "wprobe@1.yaml").write_text(WPROBE.format(name="wprobe", max_requests=100))
    (pdir / "wrecycle@1.yaml").write_text(WPROBE.format(name="wrecycle", max_requests=2))
    oneshot = WPROBE.format(name="woneshot", max_requests=1).splitlines(keepends=True)
    (pdir / "woneshot@1.yaml").write_text("".join(line for line in oneshot if not line.startswith("worker:")))
    return root


def texts(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"doc{i}.txt"
        p.write_text(f"document {i}: the cat sat on the mat {'again ' * i}\n")
        paths.append(p)
    return paths


def stats_item(path: Path) -> dict[str, Any]:
    return {"inputs": {"file": {"$attach": "f"}}, "attachments": {"f": path}}


def run_map(home: Path, registry: Path, ref: str, items: list[dict[str, Any]], **kw: Any) -> list[ItemResult]:
    kw.setdefault("jobs", 1)
    with Session(home, registry=str(registry)) as session:
        return list(session.map(ref, items, adapter="local", **kw))


class Creations:
    """Containers this process creates for ``ref`` while the block runs, from the engine's live
    event stream (its history keeps only the last few hundred events: on an engine shared with
    other tests, earlier ones are gone by the time a batch ends)."""

    def __init__(self, client: Any, ref: str) -> None:
        from theoryx.adapters.local.adapter import owner_label

        self.owner = owner_label()
        self.labels: list[dict[str, str]] = []
        self._stream = client.events(decode=True, filters={"type": "container", "event": "create",
                                                            "label": f"theoryx.ref={ref}"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):           # ends when the stream is closed
            for event in self._stream:
                attributes = event["Actor"]["Attributes"]
                if attributes.get("theoryx.owner") == self.owner:
                    self.labels.append(attributes)

    def counts(self) -> tuple[int, int]:
        """``(worker containers, one-shot containers)`` created so far (events settle first)."""
        time.sleep(1.0)
        self._stream.close()
        self._thread.join(5)
        workers = sum(1 for a in self.labels if "theoryx.worker" in a)
        return workers, len(self.labels) - workers


def probe(home: Path, r: ItemResult) -> dict[str, Any]:
    assert r.result is not None, r.error
    body: dict[str, Any] = json.loads(output(home, r.result, "out.json"))
    return body


def by_value(results: list[ItemResult]) -> dict[Any, ItemResult]:
    return {r.item.inputs.get("value"): r for r in results}


def test_worker_results_key_and_hit_like_one_shot_runs(tmp_path: Path, docker_client: Any) -> None:
    docs = texts(tmp_path, 6)
    home, other = tmp_path / "home", tmp_path / "other"
    created = Creations(docker_client, TEXTSTATS)
    batch = run_map(home, REGISTRY, TEXTSTATS, [stats_item(p) for p in docs[:4]], jobs=2)
    assert all(r.ok and r.result is not None and r.result.cache == "miss" for r in batch), batch
    workers, oneshots = created.counts()
    assert 1 <= workers <= 2 and oneshots == 0, f"{workers} worker and {oneshots} one-shot containers for 4 items"

    # A worker's result answers a one-shot `run` of the same inputs: same memo key, same outputs.
    first = batch[0].result
    assert first is not None
    hit = theoryx.run(TEXTSTATS, inputs={"file": {"$attach": "f"}}, attachments={"f": docs[0]}, adapter="local",
                      home=home, registry=str(REGISTRY))
    assert hit.cache == "hit" and hit.memo_key == first.memo_key
    assert [(o.path, o.cid) for o in hit.outputs] == [(o.path, o.cid) for o in first.outputs]

    # ... and a one-shot miss elsewhere computes the very same action and bytes, logs included.
    alone = theoryx.run(TEXTSTATS, inputs={"file": {"$attach": "f"}}, attachments={"f": docs[0]}, adapter="local",
                        home=other, registry=str(REGISTRY))
    assert alone.cache == "miss" and alone.memo_key == first.memo_key
    assert [o.cid for o in alone.outputs] == [o.cid for o in first.outputs]
    assert alone.record.stdout_cid == first.record.stdout_cid          # the summary line, via stdout_path
    assert alone.record.stderr_cid == first.record.stderr_cid

    # The other way round: a one-shot result is a hit for a later batch.
    single = theoryx.run(TEXTSTATS, inputs={"file": {"$attach": "f"}}, attachments={"f": docs[4]}, adapter="local",
                         home=home, registry=str(REGISTRY))
    assert single.cache == "miss"
    later = run_map(home, REGISTRY, TEXTSTATS, [stats_item(docs[4]), stats_item(docs[5])])
    assert [r.result.cache if r.result else r.error for r in later] == ["hit", "miss"]
    assert later[0].result is not None and later[0].result.memo_key == single.memo_key
    print(f"4 items on {workers} worker container(s); keys and output cids identical to one-shot runs")


@pytest.mark.slow
def test_a_crash_timeout_oom_or_protocol_error_fails_that_request_alone(
        tmp_path: Path, wregistry: Path, docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker, one item in flight (so that the items reach it in their order): four kinds of
    failure replace it, a clean failure keeps it."""
    from theoryx.adapters.local import workers

    monkeypatch.setattr(workers, "PIPELINE", 1)
    created = Creations(docker_client, "test/wprobe@1")
    modes = [("echo", 1), ("crash", None), ("echo", 2), ("sleep", None), ("echo", 3), ("oom", None),
             ("echo", 4), ("fail", None), ("echo", 5), ("garbage", None), ("echo", 6)]
    items = [{"inputs": {"mode": m, "value": v if v is not None else m}} for m, v in modes]
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wprobe@1", items, adapter_options={"timeout": 4})
    codes = {r.item.inputs["mode"] + str(r.item.inputs["value"]): (r.error.code if r.error else "ok") for r in results}
    assert codes == {"echo1": "ok", "crashcrash": "ERR_PROCESSOR_FAILED", "echo2": "ok", "sleepsleep": "ERR_TIMEOUT",
                     "echo3": "ok", "oomoom": "ERR_OOM", "echo4": "ok", "failfail": "ERR_PROCESSOR_FAILED",
                     "echo5": "ok", "garbagegarbage": "ERR_PROCESSOR_FAILED", "echo6": "ok"}, codes
    got = by_value(results)
    crash, fail, garbage = got["crash"].error, got["fail"].error, got["garbage"].error
    assert crash is not None and "exited with code 3 before answering" in crash.message, crash
    assert fail is not None and "exit code 7" in fail.message and "boom: failing on purpose" in fail.message, fail
    assert "mode failed with 7" in fail.message                        # the answer's "error"
    assert garbage is not None and "protocol error" in garbage.message and "not JSON" in garbage.message, garbage
    # Replaced after a crash, a timeout, an OOM kill and a protocol error; kept after a clean failure.
    hosts = {v: probe(home, got[v])["host"] for v in range(1, 7)}
    served = {v: probe(home, got[v])["served"] for v in range(1, 7)}
    assert hosts[1] != hosts[2] != hosts[3] != hosts[4] and hosts[4] == hosts[5] != hosts[6], hosts
    assert served[4] + 2 == served[5], served
    assert created.counts() == (5, 0)
    print(f"11 requests, 4 fatal failures: 5 worker containers; requests served per echo item: {served}")


def test_max_requests_recycles_workers(tmp_path: Path, wregistry: Path) -> None:
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wrecycle@1", [{"inputs": {"value": i}} for i in range(5)])
    seen = [(probe(home, r)["host"], probe(home, r)["served"]) for r in results]
    per_host: dict[str, list[int]] = {}
    for host, n in seen:
        per_host.setdefault(host, []).append(n)
    assert sorted(sorted(ns) for ns in per_host.values()) == [[1], [1, 2], [1, 2]], seen
    print(f"5 requests, max_requests 2: {len(per_host)} workers")


def test_a_spec_without_worker_still_runs_one_container_per_item_at_most_jobs_at_once(
        tmp_path: Path, wregistry: Path, docker_client: Any) -> None:
    """The batch keeps more items in flight than ``jobs``; one-shot containers stay at ``jobs``."""
    created = Creations(docker_client, "test/woneshot@1")
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/woneshot@1",
                      [{"inputs": {"mode": "sleep", "seconds": 0.5, "value": i}} for i in range(4)], jobs=1)
    windows = sorted(probe(home, r)["window"] for r in results)
    overlaps = [(a, b) for a, b in itertools.pairwise(windows) if b[0] < a[1]]
    assert not overlaps, windows
    assert created.counts() == (0, 4)
    print(f"4 one-shot containers, jobs=1: none overlapped ({len(windows)} windows)")


def test_a_requests_inputs_outputs_and_logs_are_its_own(tmp_path: Path, wregistry: Path) -> None:
    docs = texts(tmp_path, 2)
    home = tmp_path / "home"
    # Both try to write into the directory of the request the worker served before (whichever
    # reaches the one worker second does).
    items = [
        {"inputs": {"mode": "sneak", "value": 1, "files": ["a.txt"], "doc": {"$attach": "d"}},
         "attachments": {"d": docs[0]}},
        {"inputs": {"mode": "sneak", "value": 2, "files": ["b.txt"], "doc": {"$attach": "d"}},
         "attachments": {"d": docs[1]}},
    ]
    first, second = run_map(home, wregistry, "test/wprobe@1", items)
    assert first.result is not None and second.result is not None, (first.error, second.error)
    one, two = probe(home, first), probe(home, second)
    assert one["host"] == two["host"] and {one["served"], two["served"]} == {1, 2}   # one worker served both
    later = two if two["served"] == 2 else one
    cid1, cid2 = (r.result.record.input_cids[0] for r in (first, second))  # type: ignore[union-attr]
    assert one["inputs_seen"] == [cid1] and two["inputs_seen"] == [cid2]   # only its own attachments
    names = {r.item.inputs["value"]: sorted(o.path.rsplit("/", 1)[-1] for o in r.result.outputs)  # type: ignore[union-attr]
             for r in (first, second)}
    assert names == {1: ["a.txt", "out.json"], 2: ["b.txt", "out.json"]}, names
    assert output(home, first.result, "a.txt") == b"a.txt of 1\n"
    assert later["sneak"] in ("PermissionError", "written")   # whatever it did, nobody claimed it
    cas = theoryx.Session(home).stores.cas
    for r, value in ((first, 1), (second, 2)):
        assert r.result is not None and r.result.record.stdout_cid and r.result.record.stderr_cid
        assert cas.read(r.result.record.stdout_cid) == f"stdout of {value}\n".encode()
        assert f"stderr of {value}".encode() in cas.read(r.result.record.stderr_cid)
        assert f"stderr of {3 - value}".encode() not in cas.read(r.result.record.stderr_cid)
    assert not [p for p in (home / "work-v1").iterdir()], "the pool's and the runs' directories are removed"
    print(f"the second request's attempt to write into the first one's directory: {later['sneak']}")


def test_audit_re_executes_one_shot_and_catches_a_stateful_worker(tmp_path: Path, wregistry: Path) -> None:
    from theoryx.provenance.audit import Options, audit

    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wprobe@1", [{"inputs": {"mode": "stateful", "value": v}} for v in (1, 2)])
    counts = [probe(home, r)["count"] for r in results]
    assert sorted(counts) == [1, 2], counts                 # the second request saw the first one's state
    with Session(home, registry=str(wregistry)) as session:
        verdicts = {count: audit(session.stores, r.result.execution_id, Options(registry=str(wregistry))).verdict
                    for count, r in zip(counts, results, strict=True) if r.result is not None}
    assert verdicts == {1: "reproducible", 2: "diverged"}, verdicts
    print(f"counts {counts}, audit verdicts {verdicts}")


def test_breaking_off_a_batch_in_python_removes_its_workers(tmp_path: Path, wregistry: Path,
                                                            docker_client: Any) -> None:
    with Session(tmp_path / "home", registry=str(wregistry)) as session:
        results = session.map("test/wprobe@1", ({"inputs": {"value": i}} for i in range(100)), jobs=2,
                              adapter="local")
        first = next(results)
        assert first.ok and owned_containers(docker_client), "workers run while the batch does"
        cast(Generator[ItemResult, None, None], results).close()   # the caller walks away
    assert owned_containers(docker_client) == []


@pytest.mark.slow
def test_ctrl_c_of_theoryx_map_stops_the_workers_requests(tmp_path: Path, wregistry: Path, docker_client: Any) -> None:
    """45 s sleeps (the spec's timeout is 60 s) on two workers. Once both workers serve one,
    Ctrl-C: the workers are stopped (not waited for), their requests and the items waiting for a
    worker end with ERR_CANCELLED, and no container, workspace, lease or reservation is left."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"inputs": {"mode": "sleep", "seconds": 45, "value": i}}) + "\n"
                             for i in range(50)))
    home = tmp_path / "home"
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:
        proc = spawn_cli(["map", "--ref", "test/wprobe@1", "--items", str(items), "--adapter", "local", "--jobs", "2",
                          "--plan", "p"], cli_env(home, wregistry), stdout=subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    wait_for(lambda: len(owned_containers(docker_client, {proc.pid})) == 2, 120, "two workers")
    time.sleep(3.0)                         # both workers started and serve a sleep by now
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()
    proc.wait(timeout=120)
    err = errors.read_bytes().decode()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 130, err
    got = [json.loads(line) for line in out.decode().splitlines()]
    codes = [(g.get("error") or {}).get("code") for g in got]
    print(f"stopped {elapsed:.1f} s after Ctrl-C: {codes}")
    assert 2 <= len(got) < 50 and set(codes) == {"ERR_CANCELLED"}, got
    assert elapsed < 25, "the workers' requests were stopped, not waited for (each sleeps 45 s)"
    assert "interrupted:" in err and "Traceback" not in err
    assert owned_containers(docker_client, {proc.pid}) == []
    assert not list((home / "work-v1").iterdir()) and not list((home / "leases").glob("*.lease"))
    from theoryx.budget import plans
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    db = open_stores(home).db
    assert plans.reservations(db) == [], "every admitted item was settled"
    statuses = {r.execution_id: r.status for r in executions.records(db)}
    assert all(statuses.get(g["execution_id"], "failed") != "success" for g in got), statuses


@pytest.mark.slow
def test_cancelling_a_batch_in_python_stops_its_workers_requests(tmp_path: Path, wregistry: Path,
                                                                  docker_client: Any) -> None:
    """Batch.cancel() while two workers serve 45 s sleeps: every item in flight ends with
    ERR_CANCELLED within the grace period and the pool is gone."""
    from theoryx.pipeline.batch import Batch

    holder: list[Batch] = []
    items = [{"inputs": {"mode": "sleep", "seconds": 45, "value": i}} for i in range(30)]
    with Session(tmp_path / "home", registry=str(wregistry)) as session:
        results = session.map("test/wprobe@1", items, jobs=2, adapter="local", batch=holder)
        cancelled_at = cancel_when_running(docker_client, holder, 2, 1.0)
        got = list(results)
    elapsed = time.monotonic() - cancelled_at[0]
    codes = [r.error.code if r.error else "ok" for r in got]
    print(f"cancelled after {elapsed:.1f} s: {codes}")
    assert 2 <= len(codes) < 30 and set(codes) == {"ERR_CANCELLED"}, codes
    assert elapsed < 25
    assert owned_containers(docker_client) == []


@pytest.mark.slow
def test_workers_of_a_killed_theoryx_stop_and_are_swept(tmp_path: Path, wregistry: Path, docker_client: Any) -> None:
    from theoryx.adapters.local.adapter import remove_leftovers

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"inputs": {"mode": "sleep", "seconds": 1, "value": i}}) + "\n"
                             for i in range(50)))
    proc = spawn_cli(["map", "--ref", "test/wprobe@1", "--items", str(items), "--adapter", "local", "--jobs", "2",
                      "--quiet"], cli_env(tmp_path / "home", wregistry), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)

    def states() -> list[str]:
        return [c["State"] for c in owned_containers(docker_client, {proc.pid})]

    wait_for(lambda: states() == ["running", "running"], 120, "two running workers")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Their stdin ended with theoryx's connection (StdinOnce): they exit on their own.
    wait_for(lambda: set(states()) == {"exited"}, 60, "the orphaned workers to exit",
              lambda: [(c["Names"], c["State"], c["Status"]) for c in owned_containers(docker_client, {proc.pid})])
    removed = remove_leftovers(docker_client)                 # what the next local run does first
    assert len(removed) >= 2 and owned_containers(docker_client, {proc.pid}) == []


def test_a_worker_that_speaks_between_requests_is_replaced_before_the_next_is_sent(
        tmp_path: Path, wregistry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer to the next request sent before it (a guessable id), an answer given twice: the
    worker is stopped before another request reaches it, and that request goes to a new worker
    (the early answer used to be taken as the next request's, which succeeded with no outputs and
    was cached so; a double answer failed the innocent next request). An exit_code no process can
    have is a protocol error of its own request, which is recorded."""
    from theoryx.adapters.local import workers
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    monkeypatch.setattr(workers, "PIPELINE", 1)
    modes = [("early", 1), ("echo", 2), ("double", 3), ("echo", 4), ("bigcode", 5), ("echo", 6)]
    items = [{"inputs": {"mode": m, "value": v}} for m, v in modes]
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wprobe@1", items)
    codes = [r.error.code if r.error else "ok" for r in results]
    assert codes == ["ok", "ok", "ok", "ok", "ERR_PROCESSOR_FAILED", "ok"], [r.error for r in results]
    got = by_value(results)
    for v in (1, 2, 3, 4, 6):
        assert probe(home, got[v])["value"] == v           # every success has its own out.json
    hosts = {v: probe(home, got[v])["host"] for v in (1, 2, 3, 4, 6)}
    assert hosts[1] != hosts[2] and hosts[3] != hosts[4], hosts
    big = got[5]
    assert big.error is not None and "exit_code must be an integer from 0 to 255" in big.error.message
    assert executions.get(open_stores(home).db, big.error.execution_id or "") is not None


def test_a_worker_that_ended_before_the_next_request_reached_it_is_replaced_even_if_its_end_is_late(
        tmp_path: Path, wregistry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that exits after answering: if its end of stream reaches theoryx only after the
    next request was sent (held back here by half a second, as a busy machine may), that
    request still goes to a new worker (it used to fail with "the worker exited with code 0
    before answering request 2", the worker having ended before it was even sent)."""
    import queue as queue_module
    import threading
    import types

    from theoryx.adapters.local import workers

    class LateEof(queue_module.Queue):  # type: ignore[type-arg]
        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            if getattr(item, "kind", None) == "eof":
                threading.Timer(0.5, super().put, (item,)).start()
                return
            super().put(item, block, timeout)

    monkeypatch.setattr(workers, "queue", types.SimpleNamespace(Queue=LateEof, Empty=queue_module.Empty))
    monkeypatch.setattr(workers, "PIPELINE", 1)
    items = [{"inputs": {"mode": m, "value": v}} for m, v in [("quit", 1), ("echo", 2), ("quit", 3), ("echo", 4)]]
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wprobe@1", items, jobs=1)
    assert [r.error for r in results] == [None] * 4
    got = by_value(results)
    hosts = {v: probe(home, got[v])["host"] for v in (1, 2, 3, 4)}
    assert hosts[1] != hosts[2] and hosts[3] != hosts[4], hosts
    assert [probe(home, got[v])["served"] for v in (1, 2, 3, 4)] == [1, 1, 2, 1]


@pytest.mark.slow
@pytest.mark.parametrize("ref", ["test/woneshot@1", "test/wprobe@1"])
def test_fail_fast_starts_nothing_for_items_still_waiting_for_a_container(
        tmp_path: Path, wregistry: Path, ref: str) -> None:
    """--jobs 1 keeps 4 items in flight: after the first failure those still waiting for the one
    container slot (or the one worker) end ERR_CANCELLED at once, and later items never start
    (they used to run one after another, each in its own container)."""
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    items = [{"inputs": {"mode": "fail", "value": 0}}] + [
        {"inputs": {"mode": "sleep", "seconds": 2, "value": v}} for v in range(1, 6)]
    home = tmp_path / "home"
    results = run_map(home, wregistry, ref, items, fail_fast=True)
    codes = [r.error.code if r.error else "ok" for r in results]
    failed = results[0].error
    assert failed is not None and failed.code == "ERR_PROCESSOR_FAILED", codes
    rec = executions.get(open_stores(home).db, failed.execution_id or "")
    assert rec is not None
    failed_at = (rec.started_ms + rec.duration_ms) / 1000
    # Which items' sleeps began after the failure was known (the items may reach the one slot in
    # any order, so some may have run before it): at most one, which took the slot the failure
    # freed before the batch drained.
    after = [r for r in results if r.result is not None and probe(home, r)["window"][0] > failed_at]
    print(ref, codes, f"{len(after)} started after the failure")
    assert len(after) <= 1, codes
    cancelled = [r.error for r in results if r.error is not None and r.error.code == "ERR_CANCELLED"]
    assert cancelled and all("first failure (fail-fast)" in e.message for e in cancelled), cancelled


def test_a_worker_that_keeps_an_output_open_cannot_change_the_stored_blob(
        tmp_path: Path, wregistry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker answers, then writes through a descriptor it kept on its output (a seal of the
    tree cannot revoke it): the stored blob keeps the bytes it was stored with (it was the very
    file, moved into the store: corrupt afterwards, the cached success lost its output)."""
    from theoryx.adapters.local import workers
    from theoryx.store.handle import open_stores

    monkeypatch.setattr(workers, "PIPELINE", 1)
    items = [{"inputs": {"mode": "hold", "value": 1}}, {"inputs": {"mode": "sleep", "seconds": 3, "value": 2}}]
    home = tmp_path / "home"
    results = run_map(home, wregistry, "test/wprobe@1", items)
    assert all(r.ok for r in results), [r.error for r in results]
    held = by_value(results)[1]
    assert held.result is not None
    cid = held.result.output("out.json").cid
    assert open_stores(home).cas.verify(cid), "the stored output changed after it was stored"
    assert probe(home, held)["value"] == 1
