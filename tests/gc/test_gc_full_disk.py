"""Review 1, defect 3: ``gc`` and ``verify --repair`` on a filesystem with no space left. Taking
the gc lock truncated ``gc.lock`` and wrote the holder's text afresh, which needs a new page:
``ERR_STORE_FULL`` before anything was freed, though gc alone could free space. Now the text is
rewritten in place (or skipped), and gc frees the space. Needs a tmpfs (root); skipped otherwise."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from gc_support import age, garbage, run, stores

from theoryx.store.gc import collect as gc
from theoryx.store.gc.lock import GcLock
from theoryx.store.verify import verify


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True,
                          check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has not one byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = b"\0" * (64 << 10)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


@pytest.mark.parametrize("first", ["a gc ran before", "the lock was never taken"])
def test_gc_and_verify_repair_run_on_a_full_disk_and_gc_frees_space(small_tmpfs: Path, first: str) -> None:
    home = small_tmpfs / "home"
    run(home)
    junk = garbage(home, 64, tag="x" * 40_000)       # ~2.5 MiB nothing names
    if first == "a gc ran before":
        with GcLock(home, "theoryx gc"):
            pass
    age(home)
    fill(small_tmpfs)
    report = verify(stores(home), repair=True)
    assert report.clean
    assert report.orphaned.count >= len(junk)
    collected = gc.collect(stores(home), grace_s=0)
    assert collected.reclaimed.count >= len(junk)
    assert os.statvfs(small_tmpfs).f_bavail > 0
    assert not any(stores(home).cas.exists(c) for c in junk)
