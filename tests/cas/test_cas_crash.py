"""A writer killed with SIGKILL at any moment never leaves a visible partial blob.

Each test runs the write in a child process and kills it mid-way. The child is stopped at a
known point by wrapping one function in the child only (the library has no test hooks), so the
kill always lands inside the write, never before or after it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cas
from cas import Blob, Store, hash_file

REPO = Path(cas.__file__).resolve().parent.parent
SOURCE_SIZE = 300_000_000

STALL_IN_COPY = r"""
import os, sys, time
from pathlib import Path
from cas import Store

real_copy_file_range = os.copy_file_range
calls = 0

def stall_after_first_chunk(*args):
    global calls
    calls += 1
    if calls == 2:  # the first chunk is in the temp file: tell the parent, wait to be killed
        print("started", flush=True)
        time.sleep(600)
    return real_copy_file_range(*args)

os.copy_file_range = stall_after_first_chunk
Store(Path(sys.argv[1])).put_file(Path(sys.argv[2]))
print("finished", flush=True)
"""

STALL_IN_MOVE = r"""
import sys, time
from pathlib import Path
import cas.store
from cas import Store

def stall(fd):  # the file is already renamed into tmp/ and not yet published
    print("started", flush=True)
    time.sleep(600)

cas.store.hash_fd = stall
Store(Path(sys.argv[1])).put_file(Path(sys.argv[2]), move=True)
print("finished", flush=True)
"""

PUT_FILE = r"""
import sys
from pathlib import Path
from cas import Store
Store(Path(sys.argv[1])).put_file(Path(sys.argv[2]))
"""

PUT_STREAM = r"""
import sys
from pathlib import Path
from cas import Store
Store(Path(sys.argv[1])).put_stream(sys.stdin.buffer)
"""


def _spawn(script: str, *args: Path, stdin: int | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _wait_for_line(proc: subprocess.Popen[bytes], expected: bytes, timeout: float = 60) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if line != expected:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"child said {line!r}, not {expected!r}; stderr:\n{err.decode(errors='replace')}")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _files_under(directory: Path) -> list[Path]:
    return [Path(d) / name for d, _, names in os.walk(directory) for name in names]


def _assert_no_blob_published(store: Store, content: Blob) -> None:
    assert not store.exists(content.cid)
    assert list(store.iter_blobs()) == []
    assert _files_under(store.root / "blobs") == []


@pytest.fixture(scope="module")
def large_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Blob]:
    """A 300 MB file: random at both ends, sparse in between."""
    path = tmp_path_factory.mktemp("crash") / "large.bin"
    with path.open("wb") as f:
        f.write(os.urandom(1 << 20))
        f.seek(SOURCE_SIZE - (1 << 20))
        f.write(os.urandom(1 << 20))
    return path, hash_file(path)


def test_put_file_killed_mid_copy_leaves_no_partial_blob(tmp_path: Path, large_source: tuple[Path, Blob]) -> None:
    source, content = large_source
    store = Store(tmp_path / "cas-v1")
    child = _spawn(STALL_IN_COPY, store.root, source)
    _wait_for_line(child, b"started\n")
    [partial] = store.tmp_files()
    assert 0 < partial.stat().st_size < content.size  # the kill lands mid-write
    _kill(child)

    _assert_no_blob_published(store, content)
    assert list(store.tmp_files()) == [partial]  # left for gc; never mistaken for a blob
    assert store.put_file(source) == content  # a later write of the same content succeeds
    assert store.verify(content.cid)
    assert source.stat().st_size == SOURCE_SIZE
    shutil.rmtree(store.root)  # 300 MB, not sparse any more: do not leave it in pytest's tmp


def test_put_stream_killed_mid_stream_leaves_no_partial_blob(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1")
    sent = os.urandom(3 << 20)
    child = _spawn(PUT_STREAM, store.root, stdin=subprocess.PIPE)
    assert child.stdin is not None
    child.stdin.write(sent)
    child.stdin.flush()
    deadline = time.monotonic() + 60
    while sum(p.stat().st_size for p in store.tmp_files()) < len(sent):  # all it was sent is written
        assert time.monotonic() < deadline, "the child never wrote what it was sent"
        time.sleep(0.005)
    _kill(child)

    assert list(store.iter_blobs()) == []
    assert _files_under(store.root / "blobs") == []
    assert len(list(store.tmp_files())) == 1


def test_move_killed_before_publishing_keeps_the_bytes_and_publishes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "cas-v1")
    source = tmp_path / "output.bin"
    source.write_bytes(os.urandom(8 << 20))
    content = hash_file(source)
    child = _spawn(STALL_IN_MOVE, store.root, source)
    _wait_for_line(child, b"started\n")
    _kill(child)

    _assert_no_blob_published(store, content)
    assert not source.exists()
    [moved] = store.tmp_files()
    assert hash_file(moved) == content  # the consumed source is intact under tmp/


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.15, 0.4])
def test_put_file_killed_at_an_arbitrary_moment_leaves_nothing_or_a_whole_blob(tmp_path: Path, delay: float) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(64 << 20))
    content = hash_file(source)
    store = Store(tmp_path / "cas-v1")
    child = _spawn(PUT_FILE, store.root, source)
    deadline = time.monotonic() + 60
    while not list(store.tmp_files()) and child.poll() is None:  # the write has begun
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)

    assert list(store.iter_blobs()) in ([], [content])
    assert _files_under(store.root / "blobs") in ([], [store.path(content.cid)])
    if store.exists(content.cid):
        assert store.verify(content.cid)
    shutil.rmtree(tmp_path)


STALL_BEFORE_LINKING_UNNAMED = r"""
import sys, time
from pathlib import Path
import cas.store
from cas import Store

def stall(fd, size, dest, **kw):  # the bytes are in the unnamed file, not linked anywhere yet
    print("started", flush=True)
    time.sleep(600)

cas.store.publish_anonymous = stall
Store(Path(sys.argv[1])).put_bytes(b"small blob, written whole, never named" * 100)
print("finished", flush=True)
"""


def test_put_bytes_killed_before_linking_its_unnamed_file_leaves_nothing_at_all(tmp_path: Path) -> None:
    from cas.staging import open_anonymous

    store = Store(tmp_path / "cas-v1")
    probe = open_anonymous(store.root / "tmp")
    if probe is None:
        pytest.skip("no unnamed temp files (O_TMPFILE) here: put_bytes takes the named path")
    os.close(probe)
    child = _spawn(STALL_BEFORE_LINKING_UNNAMED, store.root)
    _wait_for_line(child, b"started\n")
    _kill(child)

    assert list(store.iter_blobs()) == []
    assert _files_under(store.root / "blobs") == []
    assert list(store.tmp_files()) == [], "an unnamed temp file has no name to leave behind"
