"""What keeps a remote hit cheap, against a real nginx: a result of small blobs is one request
(its blobs travel inside the signed entry, each still checked against its cid); entries without
them (older writers, large blobs) are read with one GET per blob and no HEAD; a large blob
streams through the bulk client, which a hit of small blobs never opens; and a remote hit loads
neither cryptography's PEM machinery nor hashlib, a remote miss no cryptography at all."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import KeyPair, Teammate, executions
from nginx_server import Nginx
from notices_testing import captured_notices, texts
from theoryx_testing import REPO

from theoryx.core.canonical import canonical_bytes
from theoryx.remote import cache, config, layout

pytestmark = pytest.mark.remote


def pair(nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair]) -> tuple[Teammate, Teammate]:
    alice, bob = teammates
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private)
    bob.configure(url=nginx.ro_url, trusted_keys=[str(keypairs["alice"].public)])
    return alice, bob


def ignored_and_run_locally(who: Teammate, text: str, counter: Path, says: str) -> Any:
    """``who`` runs ``text``: the remote entry is refused with exactly one warning saying
    ``says``, and the run executes locally (the second execution the counter sees)."""
    with captured_notices() as records:
        result = who.run(text)
    warnings = texts(records, "warning")
    print("warnings:", warnings)
    assert result.cache == "miss" and executions(counter) == 2
    assert len(warnings) == 1 and says in warnings[0], warnings
    return result


def requests(nginx: Nginx) -> list[str]:
    """The request lines nginx logged so far ("GET /ro/ac-v1/... HTTP/1.1"), once the log has
    settled: nginx writes a line when it finalises a request, which may be just after the client
    has its answer."""
    import time

    path = nginx.dir / "access.log"
    lines: list[str] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 0.3:
        now = path.read_text().splitlines() if path.exists() else []
        if len(now) != len(lines):
            lines, quiet_since = now, time.monotonic()
        time.sleep(0.02)
    return [line.split('"')[1] for line in lines]


def test_a_result_of_small_blobs_is_one_request_and_lands_in_the_local_store(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    alice, bob = pair(nginx, teammates, keypairs)
    a = alice.run("small")
    envelope = json.loads((nginx.root / layout.entry_path(a.memo_key)).read_text())
    inline = json.loads(base64.b64decode(envelope["payload"]))["inline"]
    assert a.output("out.txt").cid in inline and a.record.receipt_cid in inline
    before = len(requests(nginx))
    b = bob.run("small")
    made = requests(nginx)[before:]
    print(f"bob's remote hit: {made}")
    assert b.cache == "remote" and executions(counter) == 1
    assert made == [f"GET /ro/{layout.entry_path(a.memo_key)} HTTP/1.1"]
    from theoryx.store.handle import open_stores

    stores = open_stores(bob.home)
    for cid in b.record.blobs():
        stores.cas.check(cid)  # present, and its bytes hash to its cid
    assert b.output("out.txt").text() == "echo: small"
    assert cache.store_for(config.load(bob.home))._bulk_store is None, "a hit of small blobs opened the bulk client"  # type: ignore[arg-type]


def test_an_entry_without_inline_blobs_is_read_with_one_get_per_blob_and_no_head(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = pair(nginx, teammates, keypairs)
    monkeypatch.setattr(layout, "INLINE_TOTAL", 0)  # as an older writer: no blob inside the entry
    a = alice.run("older")
    monkeypatch.undo()
    before = len(requests(nginx))
    b = bob.run("older")
    made = requests(nginx)[before:]
    print(f"bob's remote hit of an entry without inline blobs: {made}")
    assert b.cache == "remote" and executions(counter) == 1
    blobs = {f"GET /ro/{layout.blob_path(c)} HTTP/1.1" for c in a.record.blobs()}  # the producer's
    assert made[0] == f"GET /ro/{layout.entry_path(a.memo_key)} HTTP/1.1"
    assert set(made[1:]) <= blobs and len(made[1:]) == len(set(made[1:])) and len(made) > 2
    assert b.output("out.txt").text() == "echo: older"


def test_an_inline_blob_that_is_not_its_cid_is_rejected_although_a_trusted_key_signed_it(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    from theoryx.provenance import dsse, keys

    alice, bob = pair(nginx, teammates, keypairs)
    a = alice.run("forged")
    path = nginx.root / layout.entry_path(a.memo_key)
    payload = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
    out = a.output("out.txt").cid
    payload["inline"][out] = base64.b64encode(b"echo: FORGED").decode()  # same size as "echo: forged"
    signed = dsse.sign(canonical_bytes(payload), layout.PAYLOAD_TYPE, keys.load_private(keypairs["alice"].private))
    path.write_text(json.dumps(signed.to_json()))
    b = ignored_and_run_locally(bob, "forged", counter, f"inline blob {out} does not match its cid")
    assert b.output("out.txt").text() == "echo: forged"


def test_a_large_blob_streams_and_a_tampered_one_leaves_nothing(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None) -> None:
    from cas import cid_of_bytes
    from theoryx.store.handle import open_stores

    alice, bob = pair(nginx, teammates, keypairs)
    a = alice.run("large", big=3 << 20)  # above SMALL_BLOB: streamed on the bulk client
    cid = a.output("blob.bin").cid
    on_server = nginx.root / layout.blob_path(cid)
    data = bytearray(on_server.read_bytes())
    data[-1] ^= 0xFF  # same size, the last byte flipped: found by the hash at the very end
    on_server.write_bytes(bytes(data))
    with captured_notices() as records:
        b = bob.run("large", big=3 << 20)
    warnings = texts(records, "warning")
    print("warnings:", warnings)
    assert b.cache == "miss" and executions(counter) == 2
    assert len(warnings) == 1 and f"remote blob {cid} does not match its cid" in warnings[0]
    stores = open_stores(bob.home)
    assert not stores.cas.exists(cid_of_bytes(bytes(data))), "the tampered bytes were kept"
    assert list(stores.cas.tmp_files()) == [], "a temp file of the rejected download stayed"
    # The true bytes back on the server: a third teammate's hit streams them, checked.
    on_server.write_bytes(a.output("blob.bin").bytes())
    carol = Teammate(bob.home.parent / "carol-home", bob.registry).configure(**bob.config)
    c = carol.run("large", big=3 << 20)
    assert c.cache == "remote" and c.output("blob.bin").bytes() == a.output("blob.bin").bytes()


PROBE = """\
import runpy, sys
sys.argv = ['theoryx'] + sys.argv[1:]
try:
    runpy.run_module('theoryx', run_name='__main__')
except SystemExit:
    pass
names = ('cryptography', 'cryptography.hazmat.primitives.serialization', 'hashlib', 'concurrent.futures')
sys.stderr.write('LOADED=' + ','.join(n for n in names if n in sys.modules) + '\\n')
"""


def test_a_remote_hit_loads_no_pem_parser_nor_hashlib_and_a_remote_miss_no_cryptography(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path,
        writer_env: None, registry: Path) -> None:
    alice, bob = pair(nginx, teammates, keypairs)
    alice.run("imports")

    def run(text: str) -> tuple[str, str]:
        args = ["--home", str(bob.home), "--registry", str(registry), "run", "--adapter", "mock",
                "--ref", "test/echo@1", "--inputs-json", json.dumps({"text": text, "big": 0})]
        done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO,
                              timeout=60)
        loaded = [line for line in done.stderr.splitlines() if line.startswith("LOADED=")]
        assert loaded, done.stderr
        return done.stdout, loaded[-1]

    out, loaded = run("imports")
    assert "Cache: remote hit" in out, out
    print("a remote hit loaded:", loaded)
    assert loaded == "LOADED=cryptography"
    out, loaded = run("not on the remote")  # a local miss and a remote miss (404): executes
    assert "Cache: miss" in out, out
    print("a remote miss loaded:", loaded)
    assert loaded == "LOADED="


def test_parallel_keeps_the_order_and_stops_taking_items_after_an_error() -> None:
    import threading
    import time

    assert cache._parallel(4, [str(i) for i in range(10)], lambda s: int(s) * 2) == [i * 2 for i in range(10)]
    started: list[str] = []
    lock = threading.Lock()

    def fn(item: str) -> int:
        with lock:
            started.append(item)
        if item == "1":
            raise ValueError("boom")
        time.sleep(0.01)
        return 0

    with pytest.raises(ValueError, match="boom"):
        cache._parallel(2, [str(i) for i in range(50)], fn)
    assert len(started) < 10, started
    assert not [t for t in threading.enumerate() if t.name == "theoryx-remote"], "a worker was left running"


def test_parallel_lets_an_interrupt_of_the_calling_thread_through_even_after_a_helper_failed() -> None:
    """A helper's error recorded first must not replace a Ctrl-C in the calling thread (the fetch
    swallows ordinary errors and goes on locally; an interrupt must stop the run)."""
    import threading

    caller_started, helper_failed = threading.Event(), threading.Event()

    def fn(item: str) -> int:
        if threading.current_thread().name == "theoryx-remote":
            assert caller_started.wait(10)     # both threads hold an item before anything fails
            helper_failed.set()
            raise ValueError("a helper's error")
        caller_started.set()
        assert helper_failed.wait(10)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache._parallel(2, ["a", "b"], fn)
    assert not [t for t in threading.enumerate() if t.name == "theoryx-remote"], "a worker was left running"


def test_a_remote_hit_commits_its_entry_with_its_record_in_one_transaction(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetched entry is not committed on its own and then again with the hit's record: one
    write transaction (one sync) puts both."""
    from theoryx.store import action_cache
    from theoryx.store.db import Database

    alice, bob = pair(nginx, teammates, keypairs)
    alice.run("once")
    bob.run("warm-up")                         # bob's spec cache and tables exist: only the hit writes now
    writes: list[str] = []
    real_write = Database.write

    def counted(self: Database, fn: object) -> object:
        writes.append(getattr(fn, "__qualname__", "?"))
        return real_write(self, fn)  # type: ignore[arg-type]

    monkeypatch.setattr(Database, "write", counted)
    monkeypatch.setattr(action_cache, "put", lambda *a, **k: pytest.fail("the entry was committed on its own"))
    b = bob.run("once")
    print(f"bob's remote hit: write transactions {writes}")
    assert b.cache == "remote" and executions(counter) == 2
    assert len(writes) == 1, writes
    monkeypatch.undo()
    again = bob.run("once")
    assert again.cache == "hit", "the entry is in bob's local cache"


@pytest.mark.parametrize("deferring", [True, False], ids=["one-sync", "fsync-each"])
def test_a_remote_hit_writes_only_the_blobs_it_lacks_and_makes_those_found_durable_before_its_record(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, monkeypatch: pytest.MonkeyPatch, deferring: bool) -> None:
    """A blob bob already has (here his own copy of the output, as another thread or process may
    just have written it, unsynced) is neither fetched nor written again; it is made durable —
    covered by the entry's one filesystem sync, or flushed itself where the store does not defer
    — before the transaction that names it. The blobs written are durable by then too."""
    import cas.store
    from cas import Store, syncing
    from theoryx.store.db import Database
    from theoryx.store.handle import open_stores

    alice, bob = pair(nginx, teammates, keypairs)
    a = alice.run("shared")
    bob.run("warm-up")
    mine = a.output("out.txt").cid
    assert open_stores(bob.home).cas.put_bytes(b"echo: shared").cid == mine
    inode = open_stores(bob.home).cas.path(mine).stat().st_ino
    events: list[tuple[str, str]] = []
    real_put, real_put_many, real_sync = Store.put_bytes, Store.put_many, syncing.sync_filesystem
    real_write, real_flush = Database.write, cas.store.flush_existing

    def put_bytes(self: Store, data: bytes) -> object:
        blob = real_put(self, data)
        events.append(("put", blob.cid))
        return blob

    def put_many(self: Store, items: Any) -> object:
        items = list(items)
        blobs = real_put_many(self, items)
        events.extend(("put", blob.cid) for blob in blobs)
        return blobs

    def sync(path: Path) -> None:
        real_sync(path)
        events.append(("syncfs", ""))

    def flush(path: str) -> None:
        real_flush(path)
        events.append(("flush", path))

    def write(self: Database, fn: object) -> object:
        events.append(("commit", ""))
        return real_write(self, fn)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "put_bytes", put_bytes)
    monkeypatch.setattr(Store, "put_many", put_many)
    monkeypatch.setattr(syncing, "sync_filesystem", sync)
    monkeypatch.setattr(syncing, "dirty_bytes", lambda: 0 if deferring else syncing.DIRTY_LIMIT + 1)
    monkeypatch.setattr(cas.store, "flush_existing", flush)
    monkeypatch.setattr(Database, "write", write)
    b = bob.run("shared")
    print(f"bob's remote hit: {events}")
    assert b.cache == "remote" and executions(counter) == 2
    envelope = json.loads((nginx.root / layout.entry_path(a.memo_key)).read_text())
    payload = layout.decode(base64.b64decode(envelope["payload"]), a.memo_key)
    needed = list(dict.fromkeys(payload.entry.blobs()))   # not the producer's receipt: nothing here names it
    written = list(dict.fromkeys(cid for what, cid in events if what == "put"))  # put_many may call put_bytes
    assert payload.receipt_cid not in needed and payload.receipt_cid not in written
    assert mine in needed and mine not in written
    assert open_stores(bob.home).cas.path(mine).stat().st_ino == inode, "bob's copy was replaced"
    assert sorted(written) == sorted(c for c in needed if c != mine)
    commit = events.index(("commit", ""))
    if deferring and syncing.can_defer(open_stores(bob.home).cas.root):
        assert events[commit - 1] == ("syncfs", ""), "one sync, after the writes, before the commit"
    else:
        assert ("flush", str(open_stores(bob.home).cas.path(mine))) in events[:commit]
    assert b.output("out.txt").text() == "echo: shared"


def test_a_blob_whose_size_the_entry_does_not_state_is_refused_past_its_bound_unread(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever can write to the bucket swaps the manifest (its size is in no entry) for a huge
    file: the reader refuses it from its announced length, reads none of it, and runs locally
    (it used to download gigabytes to disk before the hash check rejected them)."""
    from theoryx.store.handle import open_stores

    alice, bob = pair(nginx, teammates, keypairs)
    monkeypatch.setattr(layout, "INLINE_TOTAL", 0)      # the manifest travels as a blob, not inline
    a = alice.run("swapped")
    on_server = nginx.root / layout.blob_path(a.record.manifest_cid)
    os.truncate(on_server, cache.UNSTATED_MAX + 1)         # sparse: no disk used on the server
    ignored_and_run_locally(bob, "swapped", counter, f"more than the {cache.UNSTATED_MAX} it may have: not downloaded")
    stores = open_stores(bob.home)
    assert list(stores.cas.tmp_files()) == []
    assert sum(p.stat().st_size for p in bob.home.rglob("*") if p.is_file()) < 4 << 20


def test_the_readers_own_attachments_and_action_are_never_downloaded(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        counter: Path, writer_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The reader attached the same file itself and computed the same action pre-image: a hit
    stores both from there. The server's copies are even corrupted here; the hit still holds."""
    import theoryx
    from theoryx.store.handle import open_stores

    alice, bob = pair(nginx, teammates, keypairs)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(os.urandom(3 << 20))
    monkeypatch.setattr(layout, "INLINE_TOTAL", 0)

    def run(who: Teammate) -> Any:
        with theoryx.Session(who.home, registry=str(who.registry)) as s:
            return s.run("test/echo@1", inputs={"text": "attached", "doc": {"$attach": "doc"}},
                         attachments={"doc": str(doc)}, adapter="mock")

    a = run(alice)
    (input_cid,) = a.record.input_cids
    for cid in (input_cid, a.memo_key):
        (nginx.root / layout.blob_path(cid)).write_bytes(b"not the blob")
    before = len(requests(nginx))
    b = run(bob)
    made = requests(nginx)[before:]
    print("bob's requests:", made)
    assert b.cache == "remote" and executions(counter) == 1
    for cid in (input_cid, a.memo_key):
        assert not any(layout.blob_path(cid) in line for line in made), made
    stores = open_stores(bob.home)
    assert stores.cas.read(input_cid) == doc.read_bytes() and stores.cas.exists(a.memo_key)


def test_a_cancelled_prefetch_ends_within_a_fraction_of_a_second_even_if_the_sender_stalls() -> None:
    import threading
    import time

    from theoryx.remote import client

    release = threading.Event()

    def stalled() -> Any:
        yield b"first"
        release.wait(30)         # the sender stops sending
        yield b"never"

    cancel = threading.Event()
    got: list[bytes] = []
    with client._Prefetch(stalled(), cancel) as chunks:
        threading.Timer(0.3, cancel.set).start()
        t0 = time.monotonic()
        with pytest.raises(client.Cancelled):
            for chunk in chunks:
                got.append(chunk)
        took = time.monotonic() - t0
    release.set()
    assert got == [b"first"] and took < 1.5, took


def test_parallel_cancels_the_helpers_when_the_calling_thread_is_interrupted_while_it_waits() -> None:
    """The calling thread has finished its items and waits for a helper's long transfer when
    Ctrl-C arrives: the helper is cancelled, joined, and then the interrupt goes on (it used to
    wait for the whole transfer, or leave the helper and its temp file behind)."""
    import signal
    import threading
    import time

    seen_cancel: list[bool] = []
    stopped, helper_busy = threading.Event(), threading.Event()

    def fn(item: str) -> str:
        if threading.current_thread().name == "theoryx-remote":
            helper_busy.set()
            seen_cancel.append(stopped.wait(30))      # a transfer that watches its cancel event
        else:
            assert helper_busy.wait(10)               # the calling thread's item is quick
        return item

    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        cache._parallel(2, ["a", "b"], fn, stopped)
    took = time.monotonic() - t0
    assert seen_cancel == [True] and took < 5, took
    deadline = time.monotonic() + 5         # the helper returned: its thread ends right after
    while [t for t in threading.enumerate() if t.name == "theoryx-remote"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name == "theoryx-remote"]
