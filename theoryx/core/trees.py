"""Walking and removing directory trees a processor left, whatever their depth or path length.

A container may leave a tree thousands of levels deep, or with a path far longer than
``PATH_MAX``: ``os.walk`` and ``shutil.rmtree`` recurse (``RecursionError`` past ~1,000 levels)
and work on whole path strings (``ENAMETOOLONG``). These functions hold one directory descriptor
at a time, name every entry relative to it (``*at`` system calls), keep the work on a list
instead of the call stack, and never follow a symbolic link (a directory is entered with
``O_NOFOLLOW``; climbing back uses ``..`` of a directory entered that way). They are for trees
nothing else changes meanwhile: a workspace whose container has ended.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Visit = Callable[[int, str, os.stat_result], None]
"""Called with ``(directory descriptor, name in it, lstat of the entry)``."""


def _enter(fd: int, name: str) -> int | None:
    """The descriptor of directory ``name`` in ``fd``, made searchable first if it is not; None
    when it cannot be entered (gone, or still refused)."""
    for attempt in range(2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError:
            if attempt:
                return None
            with contextlib.suppress(OSError):
                os.chmod(name, 0o700, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:      # became a link: never followed
                return None
            raise
    return None


def _names(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except (FileNotFoundError, PermissionError):
        return []


def _traverse(top: Path, entry: Callable[[int, str, os.stat_result], bool], leave: Callable[[int, str], None],
              opened: Callable[[int], None] | None = None) -> None:
    """The one walk: ``entry(fd, name, lstat)`` for every entry under ``top``, parents first,
    returning whether to descend (directories only); ``leave(fd, name)`` for each directory
    descended into (or that could not be entered) once everything under it was seen. ``fd`` is
    the descriptor of the entry's directory, valid during the call only. ``opened(fd)``, if
    given, is called with each directory's descriptor (``top``'s included) before it is listed."""
    fd = os.open(top, _DIR_FLAGS)
    if opened is not None:
        try:
            opened(fd)
        except BaseException:
            os.close(fd)
            raise
    names, entered = [_names(fd)], [""]       # per level: names left, and the level's own name
    try:
        while names:
            if not names[-1]:
                names.pop()
                name = entered.pop()
                if names:                   # climb back: ``..`` of a directory entered without links
                    parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = parent
                    leave(fd, name)
                continue
            name = names[-1].pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not (entry(fd, name, st) and stat.S_ISDIR(st.st_mode)):
                continue
            child = _enter(fd, name)
            if child is None:
                leave(fd, name)
                continue
            os.close(fd)
            fd = child
            if opened is not None:
                opened(fd)
            names.append(_names(fd))
            entered.append(name)
    finally:
        os.close(fd)


def visit(top: Path, fn: Visit, *, opened: Callable[[int], None] | None = None) -> None:
    """Call ``fn`` for every entry under ``top`` (not ``top`` itself), parents before their
    children; a directory that cannot be entered is visited but not descended into.
    ``opened(fd)`` is called with the descriptor of each directory (``top`` included) as it is
    entered, before its entries are listed: what it does to the directory (take write permission
    away) holds for everything listed from it."""

    def entry(fd: int, name: str, st: os.stat_result) -> bool:
        fn(fd, name, st)
        return True

    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        _traverse(top, entry, lambda fd, name: None, opened)


def remove(top: Path) -> None:
    """Remove the directory ``top`` and everything under it, read-only parts included; entries
    already gone are fine. Raises ``OSError`` for what cannot be removed."""

    def entry(fd: int, name: str, st: os.stat_result) -> bool:
        if stat.S_ISDIR(st.st_mode):
            return True                     # emptied first, removed on the way back (leave)
        _unlink(fd, name, directory=False)
        return False

    try:
        _traverse(top, entry, lambda fd, name: _unlink(fd, name, directory=True))
    except FileNotFoundError:
        return
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(top)


def _unlink(fd: int, name: str, *, directory: bool) -> None:
    """Remove ``name`` from directory ``fd``, making ``fd`` writable first if it is not."""
    for attempt in range(2):
        try:
            if directory:
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
            return
        except FileNotFoundError:
            return
        except PermissionError:
            if attempt:
                raise
            os.fchmod(fd, 0o700)


__all__ = ["remove", "visit"]
