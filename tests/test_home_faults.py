"""Review 1, defect 7: permission and wrong-type faults inside a home (an immutable folder or
lock, a directory or FIFO where a lock belongs, a corrupt blob that cannot be moved to the
quarantine) gave ERR_INTERNAL with a crash file; now ERR_STORE naming the path (a corrupt blob:
ERR_CORRUPT_BLOB, quarantined or not). ``chattr +i`` needs root; those cases skip otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from theoryx_testing import Cli

HELLO = json.dumps({"messages": [{"role": "user", "content": "Hello"}]})


def run_json(cli: Cli, text: str = "Hello") -> dict[str, object]:
    res = cli("run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1",
              "--inputs-json", json.dumps({"messages": [{"role": "user", "content": text}]}))
    return json.loads(res.stdout)


def error_of(cli: Cli, *args: str) -> dict[str, str]:
    res = cli(*args)
    assert res.exit_code == 1, res.stdout
    body = json.loads(res.stdout.strip().splitlines()[-1])
    assert body["status"] == "error", body
    return body["error"]


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths to make immutable (``chattr +i``); made mutable again afterwards."""
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("chattr +i needs root")
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def chattr_i(made: list[Path], path: Path) -> None:
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {proc.stderr.decode().strip()}")
    made.append(path)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_gc_and_verify_with_a_gc_lock_that_is_no_file(home: Path, cli: Cli, kind: str) -> None:
    run_json(cli)
    lock = home / "gc.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir() if kind == "directory" else os.mkfifo(lock)
    for args in (["gc", "--json", "--grace", "0"], ["verify", "--json"], ["verify", "--repair", "--json"]):
        error = error_of(cli, *args)
        assert error["code"] == "ERR_STORE" and str(lock) in error["message"], error


def test_a_directory_in_place_of_the_flights_lock_fails_a_miss_with_err_store(home: Path, cli: Cli) -> None:
    run_json(cli)
    lock = home / "flight-v2" / "flights.lock"
    lock.unlink(missing_ok=True)
    lock.parent.mkdir(exist_ok=True)
    lock.mkdir()
    body = run_json(cli, "a miss takes the flight lock")
    assert body["error"]["code"] == "ERR_STORE" and str(lock) in body["error"]["message"], body  # type: ignore[index]


def test_immutable_gc_lock_and_tmp_give_err_store(home: Path, cli: Cli, immutable: list[Path]) -> None:
    run_json(cli)
    lock = home / "gc.lock"
    lock.touch()
    chattr_i(immutable, lock)
    error = error_of(cli, "gc", "--json", "--grace", "0")
    assert error["code"] == "ERR_STORE" and str(lock) in error["message"], error
    subprocess.run(["chattr", "-i", str(lock)], check=True)
    tmp = home / "cas-v1" / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / "old.tmp").write_text("left by a crash")
    os.utime(tmp / "old.tmp", (0, 0))
    chattr_i(immutable, tmp)
    error = error_of(cli, "gc", "--json", "--grace", "0")
    assert error["code"] == "ERR_STORE" and str(tmp) in error["message"], error


def test_a_corrupt_blob_that_cannot_be_quarantined_is_still_err_corrupt_blob(
        home: Path, cli: Cli, immutable: list[Path]) -> None:
    body = run_json(cli)
    [cid] = [o["cid"] for o in body["outputs"] if o["path"].endswith("response.txt")]  # type: ignore[attr-defined]
    blob = home / "cas-v1" / "blobs" / cid[3:5] / cid[5:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"X" + blob.read_bytes()[1:])
    os.chmod(blob, 0o444)
    chattr_i(immutable, blob.parent)            # the shard: nothing can be renamed out of it
    res = cli("cat", cid)
    assert res.exit_code == 1 and res.stdout == "", res.stdout
    assert "corrupt in the store" in res.stderr and "internal error" not in res.stderr, res.stderr
    assert blob.exists()


def test_a_folder_another_tool_tagged_is_not_taken_for_a_home(tmp_path: Path) -> None:
    """A directory holding only a CACHEDIR.TAG (other tools tag their caches too): `stats`, `du`,
    `ls` and `verify` took it for a home and created db-v1/, leases/ and work-v1/ in it. Now it is
    "no theoryx home" and nothing is created; a run there makes it one, and then it is."""
    import json

    from theoryx_testing import REGISTRY, Cli, hello_args

    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n# another tool's\n")
    cli = Cli(folder, REGISTRY)
    for command in (["stats"], ["du"], ["ls"], ["verify"]):
        res = cli(*command, "--json")
        assert res.exit_code != 0 and json.loads(res.stdout)["error"]["code"] == "ERR_NO_HOME", (command, res.stdout)
    assert sorted(p.name for p in folder.iterdir()) == ["CACHEDIR.TAG"]
    assert cli("run", *hello_args()).exit_code == 0
    assert cli("stats", "--json").exit_code == 0
