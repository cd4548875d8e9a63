"""What runs killed mid-way leave behind, outside the CAS: workspaces and lease temp files.

- A miss executes in ``work-v1/<execution id>/`` and removes it when it ends. The run holds its
  lease (``leases/<execution id>.lease``, ``flock``'d) from before the workspace exists until
  after it is removed, so a workspace whose lease nobody holds belongs to a run that is gone —
  killed with ``kill -9``, or on a machine that lost power — and nothing will ever remove it but
  gc.
- A lease is created under a private name (``leases/.<id>.<pid>.tmp``), locked, then linked into
  place and the private name unlinked; a process killed between those steps leaves the temp
  name. One that is locked is a lease being born; an unlocked one older than a few seconds
  (:data:`~theoryx.store.gc.watch.STALE_AFTER_S`: the same rule as for lease files) is debris.

``gc`` removes both once they are older than its grace period; ``verify`` and ``du`` report them.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from theoryx.core import trees
from theoryx.store.home import Home
from theoryx.store.leases import is_held

LEASE_TEMP = re.compile(r"\..+\.[0-9]+\.tmp")
"""The private name a lease is created under (:class:`theoryx.store.leases.Lease`)."""


@dataclass(frozen=True)
class Leftover:
    """One leftover: its path, its bytes (a workspace: everything under it) and its age in seconds
    (a workspace: since anything in it last changed)."""

    path: Path
    bytes: int
    age_s: float


def abandoned_workspaces(home: Home, now: float) -> Iterator[Leftover]:
    """The workspaces under ``work-v1/`` whose run holds no lease (checked per workspace, right
    before it is measured)."""
    try:
        entries = sorted(os.scandir(home.work), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if is_held(home.leases / f"{entry.name}.lease"):
            continue
        size, newest = _measure(Path(entry.path))
        yield Leftover(Path(entry.path), size, now - newest)


def lease_temps(home: Home, now: float) -> Iterator[Leftover]:
    """Lease temp files (``leases/.<id>.<pid>.tmp``) that no process holds."""
    try:
        entries = sorted(os.scandir(home.leases), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if not LEASE_TEMP.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if not is_held(path):
            # mtime, not ctime: linking the lease into place changes the inode's ctime, and a
            # lease temp is never written under its temp name, so its mtime is its birth.
            yield Leftover(path, st.st_size, now - st.st_mtime)


def remove_workspace(leftover: Leftover, home: Home) -> bool:
    """Remove an abandoned workspace, read-only files and directories included (a container may
    leave them). Its lease is checked once more first: False if a run holds it now (an id is
    never reused, so that cannot happen, but removing a live workspace must be impossible)."""
    if is_held(home.leases / f"{leftover.path.name}.lease"):
        return False
    if not os.path.lexists(leftover.path):
        return False
    remove_tree(leftover.path)
    return True


def remove_tree(path: Path) -> None:
    """Remove ``path`` (a tree, a file or a link; never followed), read-only parts included (a
    container may leave them); already gone is fine. Workspaces of runs, batches and workers all
    go this way."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return

    trees.remove(path)       # any depth, any path length: a container's tree is arbitrary


def _measure(top: Path) -> tuple[int, float]:
    """Bytes under ``top`` (regular files) and the newest mtime or ctime of anything in it."""
    try:
        st = os.lstat(top)
    except OSError:
        return 0, 0.0
    seen = [0, max(st.st_mtime, st.st_ctime)]

    def add(_fd: int, _name: str, st: os.stat_result) -> None:
        seen[1] = max(seen[1], st.st_mtime, st.st_ctime)
        if stat.S_ISREG(st.st_mode):
            seen[0] += st.st_size

    trees.visit(top, add)
    return int(seen[0]), seen[1]
