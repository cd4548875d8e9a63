"""theoryx.core.trees: any depth, any path length, links never followed, read-only parts removed
(a processor's output tree is arbitrary; os.walk and shutil.rmtree recurse and use whole paths)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from theoryx.core import trees
from theoryx.store.leftovers import _measure, remove_tree


def deep(top: Path, levels: int, name: str = "d") -> None:
    """``levels`` nested directories under ``top`` with a file at the bottom, made through
    descriptors (their path is far past PATH_MAX)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with os.fdopen(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
            f.write("bottom")
    finally:
        os.close(fd)


def test_a_tree_3000_levels_deep_is_visited_measured_and_removed(tmp_path: Path) -> None:
    top = tmp_path / "ws"
    deep(top, 3000)
    seen: list[str] = []
    trees.visit(top, lambda fd, name, st: seen.append(name))
    assert seen.count("d") == 3000 and seen[-1] == "f"
    assert _measure(top)[0] == len("bottom")
    remove_tree(top)
    assert not top.exists()


def test_paths_longer_than_path_max_are_removed(tmp_path: Path) -> None:
    top = tmp_path / "ws"
    deep(top, 20, "w" * 250)       # ~5,000 bytes of path: os.walk's lstat gives ENAMETOOLONG
    remove_tree(top)
    assert not top.exists()


def test_links_are_never_followed_and_read_only_parts_go(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "ws"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "f").write_text("x")
    (top / "a" / "link").symlink_to(outside, target_is_directory=True)
    os.chmod(top / "a" / "b", stat.S_IRUSR | stat.S_IXUSR)      # read-only: its file cannot go first
    os.chmod(top / "a", 0)                                          # not even searchable
    visited: list[str] = []
    trees.visit(top, lambda fd, name, st: visited.append(name))
    remove_tree(top)
    assert not top.exists() and (outside / "keep.txt").read_text() == "keep"
    assert "keep.txt" not in visited
