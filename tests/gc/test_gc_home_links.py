"""Review 1, defect 1: a symbolic link planted in place of a folder of the home (``work-v1``,
``cas-v1/tmp``, ``cas-v1/quarantine``...) is never followed. gc and ``verify --repair`` deleted
files in the link's target (an old directory, every old regular file, ``<64 hex>.<n>`` files);
now every command refuses such a home with ``ERR_STORE`` naming the link, runs included, and the
target is left as it was."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest
from gc_support import run, stores
from theoryx_testing import Cli

from cas import Store
from theoryx.errors import StoreError
from theoryx.store.gc import collect as gc
from theoryx.store.verify import verify

OLD = time.time() - 30 * 86400


def victim(tmp_path: Path) -> Path:
    """A directory outside the home holding an old directory, an old file and a file named like a
    quarantined blob."""
    target = tmp_path / "victim"
    (target / "important").mkdir(parents=True)
    (target / "important" / "thesis.tex").write_text("years of work")
    (target / "notes.txt").write_text("keep me")
    (target / ("ab" * 32 + ".1")).write_text("named like a quarantined blob")
    for path in [target / "important" / "thesis.tex", target / "important", target / "notes.txt",
                 target / ("ab" * 32 + ".1")]:
        os.utime(path, (OLD, OLD))
    return target


def contents(target: Path) -> list[str]:
    return sorted(str(p.relative_to(target)) for p in target.rglob("*"))


def plant(home: Path, folder: str, target: Path) -> Path:
    """Replace ``folder`` of the home by a link to ``target``."""
    place = home / folder
    if place.exists():
        os.rmdir(place) if not any(place.iterdir()) else os.rename(place, place.with_name(place.name + ".old"))
    place.parent.mkdir(parents=True, exist_ok=True)
    place.symlink_to(target)
    return place


@pytest.mark.parametrize("folder", ["work-v1", "cas-v1/tmp", "cas-v1/quarantine", "leases", "cas-v1/trash"])
def test_gc_and_verify_repair_refuse_a_linked_folder_and_delete_nothing_outside(
        home: Path, cli: Cli, tmp_path: Path, folder: str) -> None:
    run(home)
    target = victim(tmp_path)
    before = contents(target)
    link = plant(home, folder, target)
    for args in (["gc", "--grace", "0", "--json"], ["verify", "--repair", "--json"], ["verify", "--json"]):
        res = cli(*args)
        body = json.loads(res.stdout)
        assert res.exit_code == 1, (args, res.stdout)
        assert body["error"]["code"] == "ERR_STORE", body
        assert f"{link} is a symbolic link" in body["error"]["message"], body
        assert "does not follow links inside a home" in body["error"]["message"]
    assert contents(target) == before


def test_a_run_refuses_a_linked_folder_too(home: Path, cli: Cli, tmp_path: Path) -> None:
    run(home)
    target = victim(tmp_path)
    before = contents(target)
    link = plant(home, "work-v1", target)
    res = cli("run", "--adapter", "mock", "--ref", "llm/litellm@1", "--json",
              "--inputs-json", json.dumps({"messages": [{"role": "user", "content": "through a link"}]}))
    assert res.exit_code == 1
    body = json.loads(res.stdout)
    assert body["error"]["code"] == "ERR_STORE" and str(link) in body["error"]["message"], body
    assert contents(target) == before


def test_a_link_planted_after_the_home_was_opened_stops_gc_and_verify(home: Path, tmp_path: Path) -> None:
    run(home)
    opened = stores(home)              # a long-lived Session's stores: opened before the link
    target = victim(tmp_path)
    before = contents(target)
    plant(home, "cas-v1/tmp", target)
    with pytest.raises(StoreError, match="is a symbolic link"):
        gc.collect(opened, grace_s=0)
    plant(home, "cas-v1/quarantine", target)
    with pytest.raises(StoreError, match="is a symbolic link"):
        verify(opened, repair=True)
    assert contents(target) == before


def test_a_file_in_place_of_a_folder_is_a_store_error(home: Path, cli: Cli) -> None:
    run(home)
    os.rmdir(home / "work-v1")
    (home / "work-v1").write_text("not a directory")
    res = cli("gc", "--grace", "0", "--json")
    body = json.loads(res.stdout)
    assert res.exit_code == 1 and body["error"]["code"] == "ERR_STORE", body
    assert "work-v1 is not a directory" in body["error"]["message"]


@pytest.mark.parametrize("folder", ["tmp", "quarantine", "trash", "blobs"])
def test_the_cas_never_lists_through_a_linked_folder(tmp_path: Path, folder: str) -> None:
    store = Store(tmp_path / "cas", fsync=False)
    store.put_bytes(b"one blob")
    target = victim(tmp_path)
    place = tmp_path / "cas" / folder
    if place.exists():
        place.rename(tmp_path / "aside")
    place.symlink_to(target)
    listing = {"tmp": store.tmp_files, "quarantine": store.quarantined, "trash": store.withdrawn,
               "blobs": store.iter_blobs}[folder]
    with pytest.raises(OSError) as raised:
        list(listing())
    assert raised.value.errno == errno.ELOOP and raised.value.filename == str(place)
