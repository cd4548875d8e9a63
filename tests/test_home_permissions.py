"""Issue 10, defect 9: a home theoryx creates is private (0700) whatever the umask, and nothing
below it is writable by other users; a home shared with a group on purpose (setgid, 2770) keeps
its group bits in every directory theoryx creates, and never opens anything to others."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, REPO

# A run with an attachment under the given umask, in a fresh process (the umask is per process).
RUN_UNDER_UMASK = """
import json, os, sys
os.umask(int(sys.argv[1], 8))
import theoryx
doc = sys.argv[3]
result = theoryx.run("llm/litellm@1", home=sys.argv[2], adapter="mock", registry=sys.argv[4],
                     inputs={"messages": [{"role": "user", "content": "hi"}], "attachments": [{"$attach": "doc"}]},
                     attachments={"doc": doc})
print(json.dumps({"cache": result.cache, "outputs": [o.cid for o in result.outputs]}))
"""


def run_under(umask: str, home: Path, doc: Path) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", RUN_UNDER_UMASK, umask, str(home), str(doc), str(REGISTRY)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    body: dict[str, object] = json.loads(proc.stdout)
    return body


def modes(home: Path) -> dict[str, int]:
    """Path (relative to the home, "." for it) -> permission bits, for everything in the home."""
    out = {".": stat.S_IMODE(home.stat().st_mode)}
    for p in home.rglob("*"):
        out[str(p.relative_to(home))] = stat.S_IMODE(p.lstat().st_mode)
    return out


def reachable_by_others(home: Path, rel: str) -> bool:
    """Whether a user who is neither the owner nor in the group can reach ``rel`` (search
    permission on the home and every directory down to it)."""
    p, parts = home, Path(rel).parts if rel != "." else ()
    if not stat.S_IMODE(home.stat().st_mode) & stat.S_IXOTH:
        return False
    for part in parts[:-1]:
        p = p / part
        if not stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH:
            return False
    return True


@pytest.mark.parametrize("umask", ["000", "022"])
def test_a_new_home_is_private_whatever_the_umask(tmp_path: Path, umask: str) -> None:
    home = tmp_path / "home"
    doc = tmp_path / "doc.txt"
    doc.write_text("private attachment")
    body = run_under(umask, home, doc)
    found = modes(home)
    dirs = {rel: mode for rel, mode in found.items() if (home / rel).is_dir()}
    world_writable = sorted(rel for rel, mode in dirs.items() if mode & stat.S_IWOTH)
    group_or_world = sorted(rel for rel, mode in dirs.items() if mode & 0o077)
    exposed = sorted(rel for rel, mode in found.items() if reachable_by_others(home, rel) and mode & stat.S_IROTH)
    print(f"umask {umask}: home {oct(found['.'])}, {len(dirs)} dirs, world-writable dirs {len(world_writable)}, "
          f"dirs open to group/others {len(group_or_world)}, files readable by others {len(exposed)}")
    assert body["cache"] == "miss"
    assert found["."] == 0o700
    assert world_writable == [] and group_or_world == [] and exposed == []


def test_an_existing_home_keeps_its_mode_and_a_group_shared_one_stays_group_shared(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    os.chmod(home, 0o2770)  # what an administrator does to share a home with a group
    doc = tmp_path / "doc.txt"
    doc.write_text("team attachment")
    run_under("077", home, doc)   # even a user whose umask would keep everything private
    found = modes(home)
    assert found["."] == 0o2770, "an existing home is never chmodded"
    dirs = {rel: mode for rel, mode in found.items() if (home / rel).is_dir() and rel != "."}
    assert dirs and all(mode & 0o2070 == 0o2070 and not mode & 0o007 for mode in dirs.values()), dirs
