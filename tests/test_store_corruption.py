"""Issue 10, defect 7: a corrupt blob is never served. Wherever bytes leave the store (``cat``,
``export``, ``logs``, ``--save-dir``, ``Output.bytes``, materialising an input) they are hashed;
a mismatch quarantines the blob (out of ``blobs/``, so the next lookup misses and the next run
re-executes) and fails with ``ERR_CORRUPT_BLOB`` naming the cid and ``theoryx verify --repair``.
A hit checks the sizes of the outputs it serves. Each test counts the corrupt bytes served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from theoryx_testing import REGISTRY, REPO, Cli, hello_args, subprocess_env

from cas import Store
from theoryx.errors import CorruptBlobError

RESPONSE = "/artifacts/outputs/text/response.txt"
GOOD = b"Mock response to 1 messages"


def flip(path: Path, offset: int = 0) -> None:
    """Flip one bit of a blob in place (blobs are 0444: made writable for the moment)."""
    os.chmod(path, 0o644)
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))
    os.chmod(path, 0o444)


def truncate(path: Path, size: int) -> None:
    os.chmod(path, 0o644)
    os.truncate(path, size)
    os.chmod(path, 0o444)


def cas(home: Path) -> Store:
    return Store(home / "cas-v1")


def quarantined(home: Path) -> list[str]:
    return [cid for cid, _ in cas(home).quarantined()]


def output_cid(body: dict[str, object], path: str = RESPONSE) -> str:
    outputs = body["outputs"]
    assert isinstance(outputs, list)
    return next(o["cid"] for o in outputs if o["path"] == path)


def invoke(home: Path, command: click.Command, **params: object) -> None:
    """Call a CLI command's body directly, so the TheoryxError it raises can be inspected."""
    from theoryx.cli.state import State

    with click.Context(command, obj=State(home=str(home), registry=str(REGISTRY))) as ctx:
        ctx.invoke(command, **params)


def test_a_flipped_output_is_never_printed_and_the_next_run_re_executes(home: Path, cli: Cli) -> None:
    from theoryx.cli.inspect import cat

    first = cli.run_json(*hello_args())
    cid = output_cid(first)
    flip(cas(home).path(cid), 3)

    # A real process: exit 1, not one byte on stdout, the cid and the way out on stderr.
    proc = subprocess.run([sys.executable, "-m", "theoryx", "cat", RESPONSE], env=subprocess_env(home),
                          capture_output=True, cwd=REPO, timeout=120, check=False)
    served = len(proc.stdout)
    print(f"cat of a flipped output: exit {proc.returncode}; corrupted bytes served: {served}")
    assert proc.returncode == 1 and served == 0
    err = proc.stderr.decode()
    assert cid in err and "theoryx verify --repair" in err and "Traceback" not in err
    assert quarantined(home) == [cid] and not cas(home).exists(cid)

    again = cli.run_json(*hello_args())
    assert again["cache"] == "miss", "its blob was quarantined: the entry no longer validates"
    res = cli("cat", RESPONSE)
    assert res.exit_code == 0 and res.stdout_bytes == GOOD
    assert cas(home).read(cid) == GOOD

    # The code, as the library raises it.
    flip(cas(home).path(cid), 0)
    with pytest.raises(CorruptBlobError) as caught:
        invoke(home, cat, target=cid)
    assert caught.value.code == "ERR_CORRUPT_BLOB" and caught.value.cid == cid


def test_export_logs_save_dir_and_output_reads_refuse_corrupt_blobs(home: Path, cli: Cli, tmp_path: Path) -> None:
    import theoryx

    body = cli.run_json(*hello_args())
    eid, cid = body["execution_id"], output_cid(body)
    flip(cas(home).path(cid))
    dest = tmp_path / "exported"
    res = cli("export", eid, str(dest))
    assert res.exit_code == 1 and not dest.exists() and not list(tmp_path.glob(".exported.*"))
    assert cid in res.stderr and quarantined(home) == [cid]
    served = {"export": 0}

    cli.run_json(*hello_args())                     # re-executes; then corrupt its stdout log
    rec = json.loads(cli("show", "--json", cli.run_json(*hello_args())["execution_id"]).stdout)
    log_cid = rec["stdout_cid"]
    flip(cas(home).path(log_cid))
    res = cli("logs", "--stdout", rec["execution_id"])
    served["logs"] = len(res.stdout_bytes)
    assert res.exit_code == 1 and served["logs"] == 0 and log_cid in res.stderr
    assert log_cid in quarantined(home)

    body = cli.run_json(*hello_args())             # a miss again (its log was quarantined)
    assert body["cache"] == "miss"
    flip(cas(home).path(output_cid(body)))
    save = tmp_path / "saved"
    res = cli("run", *hello_args("--save-dir", str(save)))
    saved_response = save / "text" / "response.txt"   # metadata.json, intact, may be saved
    served["save-dir"] = saved_response.stat().st_size if saved_response.exists() else 0
    assert res.exit_code == 1 and not saved_response.exists()
    assert output_cid(body) in quarantined(home)

    result = theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "Hello"}]},
                         home=home, adapter="mock", registry=str(REGISTRY))
    assert result.cache == "miss"
    flip(cas(home).path(result.output("text/response.txt").cid))
    with pytest.raises(theoryx.TheoryxError):
        result.output("text/response.txt").bytes()
    print(f"corrupted bytes served: {served}, Output.bytes: raised")
    assert not any(served.values())


def test_a_failed_export_removes_the_parent_directories_it_created(home: Path, cli: Cli, tmp_path: Path) -> None:
    # the private directory was removed on failure, but the missing parents made for it stayed
    body = cli.run_json(*hello_args())
    eid = body["execution_id"]
    flip(cas(home).path(output_cid(body)), 0)
    res = cli("export", eid, str(tmp_path / "new" / "deeper" / "out"))
    assert res.exit_code == 1 and "is corrupt" in res.stderr
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    too_long = tmp_path / "kept" / "made" / ("a" * 300)       # mkdtemp fails: the name is too long
    assert cli("export", eid, str(too_long)).exit_code == 2
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_truncated_output_makes_the_next_run_a_miss(home: Path, cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    cid = output_cid(body)
    truncate(cas(home).path(cid), 5)
    again = cli.run_json(*hello_args())
    print(f"truncated output: rerun {again['cache']}; quarantined {len(quarantined(home))}")
    assert again["cache"] == "miss", "the hit checks the sizes of the outputs it serves"
    assert quarantined(home) == [cid]
    assert cli("cat", RESPONSE).stdout_bytes == GOOD
    assert cli.run_json(*hello_args())["cache"] == "hit"


def test_a_corrupt_attachment_is_never_materialised(home: Path, cli: Cli, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"the attachment's true bytes")

    def run_with(text: str) -> dict[str, object]:
        inputs = {"messages": [{"role": "user", "content": text}], "attachments": [{"$attach": "doc"}]}
        return cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(inputs),
                            "--attach", f"doc={doc}")

    first = run_with("one")
    assert first["status"] == "success"
    att = Store(home / "cas-v1").put_file(doc).cid
    flip(cas(home).path(att))
    failed = run_with("two")                        # a miss: it would link the corrupt blob in
    error = failed["error"]
    assert isinstance(error, dict)
    print(f"corrupt attachment: {error['code']}; corrupted bytes served to the processor: 0")
    assert failed["_exit"] == 1 and error["code"] == "ERR_CORRUPT_BLOB" and att in error["message"]
    assert quarantined(home) == [att]
    assert not any((home / "work-v1").iterdir()), "the failed run's workspace was removed"
    again = run_with("two")                         # stored afresh from the file
    assert again["status"] == "success" and cas(home).read(att) == doc.read_bytes()


def test_verify_reports_and_repair_clears_the_quarantine_and_du_counts_it(home: Path, cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    cid = output_cid(body)
    flip(cas(home).path(cid))
    assert cli("cat", RESPONSE).exit_code == 1
    du = json.loads(cli("du", "--json").stdout)
    assert du["quarantined"] == {"count": 1, "bytes": len(GOOD)}
    report = json.loads(cli("verify", "--json").stdout)
    assert [q["cid"] for q in report["quarantined"]] == [cid]
    assert report["missing"] and not report["clean"], "the cache entry needs the quarantined blob"
    repaired = json.loads(cli("verify", "--repair", "--json").stdout)
    assert repaired["clean"] and repaired["repaired"]["quarantined_removed"] == 1
    assert quarantined(home) == [] and json.loads(cli("du", "--json").stdout)["quarantined"]["count"] == 0
    assert cli.run_json(*hello_args())["cache"] == "miss"


def test_a_directory_in_place_of_a_blob_is_corrupt_and_repair_removes_it(home: Path, cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    cid = output_cid(body)
    path = cas(home).path(cid)
    os.chmod(path, 0o644)
    path.unlink()
    path.mkdir()
    (path / "x").write_text("not a blob")
    report = json.loads(cli("verify", "--json").stdout)
    assert not report["clean"]
    repaired = cli("verify", "--repair", "--json")
    assert repaired.exit_code == 0, repaired.output
    assert json.loads(repaired.stdout)["clean"] and not path.exists()
    again = cli.run_json(*hello_args())
    assert again["cache"] == "miss" and cas(home).read(cid) == GOOD
    assert cas(home).delete(cid) and not cas(home).delete(cid)
