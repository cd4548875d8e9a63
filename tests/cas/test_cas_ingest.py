"""Getting files in: put_file (copy and move), put_stream, and hash_file without a store."""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

import cas.copying
import cas.hashing
import cas.store
from cas import Blob, Store, cid_of_bytes, hash_file


@pytest.fixture
def small_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the copy_file_range pipeline take small, odd-sized (unaligned) chunks."""
    monkeypatch.setattr(cas.copying, "PIPELINE_MIN_SIZE", 64 << 10)
    monkeypatch.setattr(cas.copying, "PIPELINE_CHUNK", (1 << 20) + 12345)


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- put_file, copying -----------------------------------------------------------------------


def test_put_file_leaves_the_source_untouched(store: Store, tmp_path: Path) -> None:
    source = _file(tmp_path / "in.bin", os.urandom(100_000))
    before = source.stat()
    blob = store.put_file(source)
    after = source.stat()
    assert blob == Blob(cid_of_bytes(source.read_bytes()), 100_000)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns, after.st_nlink) == (
        before.st_ino,
        before.st_mode,
        before.st_mtime_ns,
        before.st_nlink,
    )
    assert store.path(blob.cid).stat().st_ino != before.st_ino
    assert store.read(blob.cid) == source.read_bytes()


def test_put_file_of_a_large_file_takes_the_pipeline_over_many_chunks(
    store: Store, tmp_path: Path, small_pipeline: None
) -> None:
    data = os.urandom((5 << 20) + 777)
    blob = store.put_file(_file(tmp_path / "big.bin", data))
    assert blob == Blob(cid_of_bytes(data), len(data))
    assert store.verify(blob.cid)
    assert list(store.tmp_files()) == []


def test_put_file_at_default_thresholds_matches_cid_of_bytes(store: Store, tmp_path: Path) -> None:
    data = os.urandom(cas.copying.PIPELINE_MIN_SIZE + 4097)
    assert store.put_file(_file(tmp_path / "big.bin", data)) == Blob(cid_of_bytes(data), len(data))


def test_put_file_falls_back_to_read_write_without_copy_file_range(
    store: Store, tmp_path: Path, small_pipeline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    data = os.urandom(3 << 20)
    assert store.put_file(_file(tmp_path / "big.bin", data)) == Blob(cid_of_bytes(data), len(data))


def test_put_file_reads_a_file_whose_size_lies(
    store: Store, tmp_path: Path, small_pipeline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like /proc files: copy_file_range copies nothing although stat reports a size."""
    monkeypatch.setattr(os, "copy_file_range", lambda *args: 0)
    data = os.urandom(1 << 20)
    assert store.put_file(_file(tmp_path / "big.bin", data)).cid == cid_of_bytes(data)


def test_put_file_of_empty_file(store: Store, tmp_path: Path) -> None:
    assert store.put_file(_file(tmp_path / "empty", b"")) == Blob(cid_of_bytes(b""), 0)


def test_put_file_follows_symlinks(store: Store, tmp_path: Path) -> None:
    target = _file(tmp_path / "target", b"through a link")
    (tmp_path / "link").symlink_to(target)
    assert store.put_file(tmp_path / "link").cid == cid_of_bytes(b"through a link")


def test_put_file_reads_a_fifo_to_its_end(store: Store, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    data = os.urandom(3 << 20)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,))
    writer.start()
    blob = store.put_file(fifo)
    writer.join()
    assert blob == Blob(cid_of_bytes(data), len(data))


def test_put_file_of_directory_or_missing_file_raises_and_leaves_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        store.put_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "missing")
    assert list(store.iter_blobs()) == []
    assert list(store.tmp_files()) == []


# -- put_file, moving ------------------------------------------------------------------------


def test_move_consumes_the_source_without_copying_it(store: Store, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    source = _file(tmp_path / "out.bin", data)
    inode = source.stat().st_ino
    blob = store.put_file(source, move=True)
    assert not source.exists()
    assert blob == Blob(cid_of_bytes(data), len(data))
    assert store.path(blob.cid).stat().st_ino == inode  # renamed, not copied
    assert stat.S_IMODE(store.path(blob.cid).stat().st_mode) == 0o444
    assert store.verify(blob.cid)
    assert list(store.tmp_files()) == []


def test_move_of_content_already_stored_just_consumes_the_source(store: Store, tmp_path: Path) -> None:
    existing = store.put_bytes(b"dup")
    inode = store.path(existing.cid).stat().st_ino
    source = _file(tmp_path / "dup", b"dup")
    assert store.put_file(source, move=True) == existing
    assert not source.exists()
    assert store.path(existing.cid).stat().st_ino == inode
    assert list(store.tmp_files()) == []


def test_move_across_filesystems_falls_back_to_copy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _file(tmp_path / "far.bin", b"on another device")
    real_rename = os.rename

    def rename(src: os.PathLike[str] | str, dst: os.PathLike[str] | str) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    blob = store.put_file(source, move=True)
    assert not source.exists()
    assert store.read(blob.cid) == b"on another device"


def test_move_of_a_multiply_linked_file_copies_and_spares_the_other_name(store: Store, tmp_path: Path) -> None:
    source = _file(tmp_path / "a", b"two names")
    other = tmp_path / "b"
    os.link(source, other)
    blob = store.put_file(source, move=True)
    assert not source.exists()
    assert other.read_bytes() == b"two names"
    assert stat.S_IMODE(other.stat().st_mode) != 0o444  # the surviving name was not sealed
    assert store.path(blob.cid).stat().st_ino != other.stat().st_ino


def test_move_of_a_symlink_stores_the_target_and_removes_the_link(store: Store, tmp_path: Path) -> None:
    target = _file(tmp_path / "target", b"pointed at")
    link = tmp_path / "link"
    link.symlink_to(target)
    blob = store.put_file(link, move=True)
    assert not link.is_symlink()
    assert target.read_bytes() == b"pointed at"
    assert store.read(blob.cid) == b"pointed at"


def test_move_that_fails_before_publishing_puts_the_source_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _file(tmp_path / "keep", b"do not lose me")
    source.chmod(0o640)

    def broken_hash(fd: int) -> tuple[str, int]:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("cas.store.hash_fd", broken_hash)
    with pytest.raises(OSError, match="Input/output"):
        store.put_file(source, move=True)
    assert source.read_bytes() == b"do not lose me"
    assert stat.S_IMODE(source.stat().st_mode) == 0o640
    assert list(store.iter_blobs()) == []
    assert list(store.tmp_files()) == []


def test_move_of_a_file_written_during_hashing_stores_a_consistent_copy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that still holds the file open could change it after it was hashed: copy it."""
    source = _file(tmp_path / "busy", b"still being written")
    inode = source.stat().st_ino
    real_hash_fd = cas.hashing.hash_fd

    def hash_then_see_a_write(fd: int) -> tuple[str, int]:
        result = real_hash_fd(fd)
        st = os.fstat(fd)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return result

    monkeypatch.setattr(cas.store, "hash_fd", hash_then_see_a_write)
    blob = store.put_file(source, move=True)
    assert not source.exists()
    assert store.read(blob.cid) == b"still being written"
    assert store.path(blob.cid).stat().st_ino != inode
    assert list(store.tmp_files()) == []


def test_move_of_a_file_we_may_not_seal_stores_a_copy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _file(tmp_path / "foreign", b"owned by someone else")
    real_fchmod = os.fchmod
    calls = []

    def fchmod_refused_once(fd: int, mode: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod_refused_once)
    blob = store.put_file(source, move=True)
    assert not source.exists()
    assert store.read(blob.cid) == b"owned by someone else"
    assert list(store.tmp_files()) == []


# -- put_stream ------------------------------------------------------------------------------


def test_put_stream_stores_from_the_current_position(store: Store) -> None:
    stream = io.BytesIO(b"skip|keep")
    stream.seek(5)
    assert store.put_stream(stream) == Blob(cid_of_bytes(b"keep"), 4)
    assert not stream.closed


def test_put_stream_that_fails_midway_leaves_nothing(store: Store) -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError(errno.ECONNRESET, "connection reset")
            return b"x" * 1000

    with pytest.raises(OSError, match="connection reset"):
        store.put_stream(Failing())  # type: ignore[arg-type]
    assert list(store.iter_blobs()) == []
    assert list(store.tmp_files()) == []


# -- hash_file -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1023, 1 << 20, (3 << 20) + 5])
def test_hash_file_matches_cid_of_bytes(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert hash_file(_file(tmp_path / "f", data)) == Blob(cid_of_bytes(data), size)


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="b3sum is not installed")
@pytest.mark.parametrize("size", [5, (3 << 20) + 5])
def test_hash_file_agrees_with_b3sum(tmp_path: Path, size: int) -> None:
    path = _file(tmp_path / "f", os.urandom(size))
    reference = subprocess.run(["b3sum", "--no-names", str(path)], capture_output=True, text=True, check=True)
    assert hash_file(path).cid == "b3:" + reference.stdout.strip()


def test_hash_file_does_not_create_anything(tmp_path: Path) -> None:
    path = _file(tmp_path / "f", b"alone")
    hash_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_hash_file_of_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        hash_file(tmp_path)


def test_files_are_hashed_by_reading_where_they_cannot_be_mapped(
    store: Store, tmp_path: Path, small_pipeline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_mmap(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENODEV, "No such device")

    monkeypatch.setattr("mmap.mmap", no_mmap)
    data = os.urandom((3 << 20) + 99)
    path = _file(tmp_path / "unmappable", data)
    assert hash_file(path) == Blob(cid_of_bytes(data), len(data))
    blob = store.put_file(path)
    assert blob == Blob(cid_of_bytes(data), len(data))
    assert store.verify(blob.cid)
