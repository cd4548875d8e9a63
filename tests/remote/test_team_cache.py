"""The team cache against a real nginx (WebDAV): two homes as two teammates, Alice and Bob.

Alice misses and uploads; Bob's identical run is a remote hit with the same cids and nothing
executed; a Bob who trusts other keys ignores Alice's entries; whatever is tampered with on the
server is rejected and Bob executes instead; an upload cut in the middle leaves nothing a reader
accepts; a server that is down costs a bounded time and one warning, never the run.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import KeyPair, Teammate, executions, remote_files
from nginx_server import PASSWORD, Nginx
from notices_testing import captured_notices, texts

from theoryx.remote import layout

pytestmark = pytest.mark.remote


def setup_pair(nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
               bob_trusts: str = "alice", **timeouts: float) -> tuple[Teammate, Teammate]:
    alice, bob = teammates
    extra = {"timeouts": timeouts} if timeouts else {}
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private, **extra)
    bob.configure(url=nginx.ro_url, trusted_keys=[str(keypairs[bob_trusts].public)], **extra)
    return alice, bob


def entry_file(nginx: Nginx, memo_key: str) -> Path:
    return nginx.root / layout.entry_path(memo_key)


def access_lines(nginx: Nginx) -> int:
    path = nginx.dir / "access.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_miss_uploads_and_an_identical_run_elsewhere_is_a_verified_remote_hit(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs)
    a = alice.run("hello", big=3 << 20)
    assert a.cache == "miss" and executions(counter) == 1
    files = remote_files(nginx)
    entry = entry_file(nginx, a.memo_key)
    assert entry.exists(), files
    envelope = json.loads(entry.read_text())
    assert envelope["payloadType"] == "application/vnd.theoryx.ac+json"
    assert envelope["signatures"][0]["keyid"] == keypairs["alice"].keyid
    for cid in a.record.blobs():
        if cid not in (a.record.index_cid,):
            assert (nginx.root / layout.blob_path(cid)).exists() or cid == a.record.receipt_cid, cid
    assert (nginx.root / layout.blob_path(a.record.receipt_cid)).exists()

    b = bob.run("hello", big=3 << 20)
    print(f"bob: cache={b.cache}, executions={executions(counter)}, remote objects={len(files)}")
    assert b.cache == "remote" and executions(counter) == 1, "Bob's run executed"
    assert b.record.remote_url == nginx.ro_url.rstrip("/")
    assert b.record.cache == "hit" and b.record.source_execution == a.execution_id
    assert [(o.path, o.cid, o.size) for o in b.outputs] == [(o.path, o.cid, o.size) for o in a.outputs]
    assert b.output("out.txt").text() == "echo: hello"
    assert b.output("blob.bin").bytes() == a.output("blob.bin").bytes()

    before = access_lines(nginx)
    again = bob.run("hello", big=3 << 20)
    assert again.cache == "hit" and executions(counter) == 1
    assert access_lines(nginx) == before, "a local hit must not talk to the remote"


def test_a_teammate_who_trusts_other_keys_ignores_the_entries_and_says_so_once(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs, bob_trusts="bob")
    alice.run("hi")
    with captured_notices() as records:
        b = bob.run("hi")
    warnings = texts(records, "warning")
    print("warnings:", warnings)
    assert b.cache == "miss" and executions(counter) == 2
    assert len(warnings) == 1 and "not signed by a trusted key" in warnings[0], warnings
    assert keypairs["alice"].keyid[:16] in warnings[0]


def test_a_batch_reports_ignored_entries_once_and_counts_the_rest(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    """Bob's batch over eight items whose entries Alice signed with a key he does not trust:
    one warning per item (a 100,000-item batch printed 100,000 lines). Now the first is reported,
    the others counted, and one line at the batch's end says how many more there were."""
    import theoryx

    alice, bob = setup_pair(nginx, teammates, keypairs, bob_trusts="bob")
    items = [{"inputs": {"text": f"item {i}", "big": 0}} for i in range(8)]
    with theoryx.Session(alice.home, registry=str(alice.registry)) as s:
        assert all(r.ok for r in s.map("test/echo@1", items, jobs=2, adapter="mock"))
    with captured_notices() as records, theoryx.Session(bob.home, registry=str(bob.registry)) as s:
        got = list(s.map("test/echo@1", items, jobs=3, adapter="mock"))
    warnings = texts(records, "warning")
    print("warnings:", warnings)
    assert [r.result.cache for r in got if r.result is not None] == ["miss"] * 8 and executions(counter) == 16
    assert len(warnings) == 2 and "not signed by a trusted key" in warnings[0], warnings
    assert warnings[1] == "7 more team cache entries ignored (the first is reported above)"
    alice.run("solo")
    with captured_notices() as records:        # a single run still reports its own
        assert bob.run("solo").cache == "miss"
    assert len(texts(records, "warning")) == 1


def test_a_tampered_entry_is_rejected_and_the_run_executes_instead(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs)
    a = alice.run("tamper me")
    path = entry_file(nginx, a.memo_key)
    envelope = json.loads(path.read_text())
    import base64

    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["entry"]["cost_micros"] = 1  # any change breaks the signature
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(envelope))
    with captured_notices() as records:
        b = bob.run("tamper me")
    assert b.cache == "miss" and executions(counter) == 2
    assert any("does not verify" in w or "not signed by a trusted key" in w for w in texts(records, "warning"))


def test_an_entry_moved_to_another_key_is_rejected_although_its_signature_verifies(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs)
    one = alice.run("one")
    two_key = alice.run("two").memo_key
    # Replay the signed entry of "one" at the path of "two": the signature is Alice's and valid.
    entry_file(nginx, two_key).write_bytes(entry_file(nginx, one.memo_key).read_bytes())
    with captured_notices() as records:
        b = bob.run("two")
    assert b.cache == "miss" and b.output("out.txt").text() == "echo: two"
    assert any("not " + two_key in w or "for memo key" in w for w in texts(records, "warning"))


def test_a_tampered_blob_is_rejected_nothing_of_it_stays_and_the_run_executes(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs)
    a = alice.run("blob", big=1 << 20)
    cid = a.output("blob.bin").cid
    on_server = nginx.root / layout.blob_path(cid)
    data = bytearray(on_server.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    on_server.write_bytes(bytes(data))
    from cas import cid_of_bytes

    forged = cid_of_bytes(bytes(data))
    with captured_notices() as records:
        b = bob.run("blob", big=1 << 20)
    warnings = texts(records, "warning")
    print("warnings:", warnings)
    assert b.cache == "miss" and executions(counter) == 2
    assert len(warnings) == 1 and "does not match its cid" in warnings[0]
    from theoryx.store.handle import open_stores

    stores = open_stores(bob.home)
    assert not stores.cas.exists(forged), "the tampered bytes were kept"
    assert list(stores.cas.tmp_files()) == [], "a temp file of the rejected download stayed"
    assert b.output("blob.bin").cid == cid  # Bob's own execution gives the true bytes


def test_nginx_stopped_in_the_middle_of_an_upload_fails_nothing_and_leaves_no_entry(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs, connect_s=1, request_s=2, stall_s=2)
    sync = tmp_path / "sync"
    sync.mkdir()
    monkeypatch.setenv("THEORYX_SYNC_DIR", str(sync))
    monkeypatch.setenv("THEORYX_SYNC_POINTS", "remote_uploading")
    box: dict[str, object] = {}

    def a_run() -> None:
        with captured_notices() as records:
            try:
                box["result"] = alice.run("cut", big=2 << 20)
            except Exception as exc:  # reported below
                box["error"] = exc
        box["warnings"] = texts(records, "warning")

    t = threading.Thread(target=a_run)
    t.start()
    deadline = time.monotonic() + 30
    while not list(sync.glob("remote_uploading.*.reached")):
        assert time.monotonic() < deadline and t.is_alive(), box
        time.sleep(0.01)
    uploaded = remote_files(nginx)
    nginx.stop()
    (sync / "remote_uploading.go").touch()
    t.join(60)
    monkeypatch.delenv("THEORYX_SYNC_POINTS")
    assert "error" not in box, box
    result = box["result"]
    assert result.cache == "miss"
    print(f"objects on the server when it stopped: {uploaded}; warnings: {box['warnings']}")
    assert len(box["warnings"]) == 1 and "not shared" in box["warnings"][0]  # type: ignore[arg-type]
    nginx.restart()
    assert not any(f.startswith("ac-v1/") for f in remote_files(nginx)), remote_files(nginx)
    b = bob.run("cut", big=2 << 20)
    assert b.cache == "miss" and executions(counter) == 2


@pytest.mark.slow
def test_nginx_stopped_while_a_large_blob_is_uploading_leaves_no_blob_and_no_entry(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = setup_pair(nginx, teammates, keypairs, connect_s=1, request_s=2, stall_s=2)
    size = 256 << 20
    box: dict[str, object] = {}
    t = threading.Thread(target=lambda: box.update(result=alice.run("large", big=size)))
    t.start()
    deadline = time.monotonic() + 120
    # nginx spools a PUT's body in its temp directory and renames it into place at the end.
    while not any(p.stat().st_size > (1 << 20) for p in (nginx.dir / "tmp").rglob("*") if p.is_file()):
        assert time.monotonic() < deadline and t.is_alive(), "the upload never started"
        time.sleep(0.005)
    nginx.stop()
    t.join(120)
    assert getattr(box.get("result"), "cache", None) == "miss", box
    nginx.restart()
    files = remote_files(nginx)
    blob = box["result"].output("blob.bin")  # type: ignore[attr-defined]
    print(f"after the cut: {len(files)} objects on the server; the 256 MiB blob there: "
          f"{layout.blob_path(blob.cid) in files}")
    assert layout.blob_path(blob.cid) not in files and not any(f.startswith("ac-v1/") for f in files)
    assert bob.run("large", big=size).cache == "miss"


def test_a_server_that_is_down_costs_a_bounded_time_and_one_warning(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, _ = setup_pair(nginx, teammates, keypairs)  # the documented default timeouts
    nginx.stop()
    with captured_notices() as records:
        t0 = time.monotonic()
        a = alice.run("down")
        first = time.monotonic() - t0
        t0 = time.monotonic()
        alice.run("down again")
        second = time.monotonic() - t0
    warnings = texts(records, "warning")
    print(f"server down: first run {first:.3f} s (one warning), next run {second:.3f} s; warnings: {warnings}")
    assert a.cache == "miss" and executions(counter) == 2
    assert len(warnings) == 1 and "continuing locally" in warnings[0]
    assert first < 2.0 + 1.0, "a refused connection must cost about nothing (bounded by connect_s)"
    assert PASSWORD not in " ".join(warnings)


def test_a_server_that_accepts_and_never_answers_costs_at_most_the_request_timeout(
        teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path,
        writer_env: None, nginx: Nginx) -> None:
    import socket

    alice, _ = teammates
    with socket.socket() as silent:  # the kernel completes connections; nobody ever reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        alice.configure(url=f"http://127.0.0.1:{port}/cache", upload=True, signing_key=keypairs["alice"].private,
                        timeouts={"connect_s": 1, "request_s": 1.5, "retries": 1})
        with captured_notices() as records:
            t0 = time.monotonic()
            a = alice.run("silent")
            took = time.monotonic() - t0
    warnings = texts(records, "warning")
    print(f"silent server, request_s=1.5, retries=1: the run took {took:.2f} s; warnings: {warnings}")
    assert a.cache == "miss" and len(warnings) == 1
    assert took < 1.5 * 2 + 1.5, f"{took:.2f} s is beyond the bound"


def test_a_batch_publishes_every_result_before_it_returns_and_a_teammate_batch_hits_them_all(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    import theoryx

    alice, bob = setup_pair(nginx, teammates, keypairs)
    items = [{"inputs": {"text": f"item {i}", "big": 0}} for i in range(6)]
    with theoryx.Session(alice.home, registry=str(alice.registry)) as s:
        done = list(s.map("test/echo@1", items, jobs=3, adapter="mock"))
    assert all(r.ok for r in done) and executions(counter) == 6
    # map returned: every entry is on the remote already (uploads are not left in the background)
    assert sum(f.startswith("ac-v1/") for f in remote_files(nginx)) == 6
    with theoryx.Session(bob.home, registry=str(bob.registry)) as s:
        got = list(s.map("test/echo@1", items, jobs=3, adapter="mock"))
    caches = [r.result.cache for r in got if r.result is not None]
    print(f"bob's batch: {caches}")
    assert caches == ["remote"] * 6 and executions(counter) == 6


def test_an_upload_the_server_refuses_does_not_stop_this_client_reading_the_team_cache(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    """Bob may upload but points at the read-only location: his miss's upload is refused (403).
    That skipped the remote for 60 s for lookups too, so his next runs (a batch's next items)
    executed and paid although Alice's trusted results were there."""
    alice, bob = teammates
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private)
    alice.run("shared")
    bob.configure(url=nginx.ro_url, upload=True, signing_key=keypairs["bob"].private,
                  trusted_keys=[str(keypairs["alice"].public)])
    with captured_notices() as records:
        new = bob.run("only bob's")
        shared = bob.run("shared")
        other = bob.run("only bob's too")
    warnings = texts(records, "warning")
    assert new.cache == "miss" and other.cache == "miss"
    assert shared.cache == "remote" and executions(counter) == 3, "the shared result was executed again"
    assert len(warnings) == 1 and "not shared" in warnings[0], warnings  # the next upload is skipped
