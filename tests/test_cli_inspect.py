"""``cat``, ``show``, ``ls``, ``export``, ``logs``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, Cli, hello_args


def test_cat_resolves_every_kind_of_world_path(cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    eid = body["execution_id"]
    assert cli("cat", "/artifacts/outputs/text/response.txt").stdout == "Mock response to 1 messages"
    assert cli("cat", body["outputs"][1]["cid"]).stdout == "Mock response to 1 messages"
    receipt = json.loads(cli("cat", body["receipt_path"]).stdout)
    assert receipt["execution_id"] == eid
    index = json.loads(cli("cat", body["index_path"]).stdout)
    assert [o["cid"] for o in index["outputs"]] == [o["cid"] for o in body["outputs"]]
    action = json.loads(cli("cat", f"/artifacts/execution/{eid}/action.json").stdout)
    assert action["ref"] == "llm/litellm@1"
    assert "Mock response" in cli("cat", f"/artifacts/execution/{eid}/stdout.log").stdout


def test_cat_errors(cli: Cli) -> None:
    cli.run_json(*hello_args())
    missing = cli("cat", "/artifacts/outputs/none.txt")
    assert missing.exit_code == 1 and "no execution produced /artifacts/outputs/none.txt" in missing.stderr
    assert cli("cat", "relative/path").exit_code == 2
    assert cli("cat", "b3:" + "0" * 64).exit_code == 1


def test_newest_execution_wins_a_world_path(cli: Cli) -> None:
    cli.run_json(*hello_args())
    two = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", two)
    assert cli("cat", "/artifacts/outputs/text/response.txt").stdout == "Mock response to 2 messages"


def test_show_human_and_json(cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    human = cli("show", body["execution_id"])
    assert human.exit_code == 0 and "status: success" in human.stdout and "cache: miss" in human.stdout
    short = cli("show", body["execution_id"][:20])
    assert short.exit_code == 0
    js = json.loads(cli("show", "--json", body["execution_id"]).stdout)
    assert js["memo_key"] == body["memo_key"] and js["status"] == "success"
    assert cli("show", "nonexistent00").exit_code == 1


def test_ls_filters_and_limit(cli: Cli) -> None:
    for plan in ("a", "b", "a"):
        cli.run_json(*hello_args("--plan", plan))
    rows = json.loads(cli("ls", "--json").stdout)
    assert len(rows) == 3 and rows[0]["execution_id"] > rows[1]["execution_id"]
    assert len(json.loads(cli("ls", "--json", "--plan", "a").stdout)) == 2
    assert len(json.loads(cli("ls", "--json", "--limit", "1").stdout)) == 1
    assert json.loads(cli("ls", "--json", "--ref", "x/y@1").stdout) == []
    assert "llm/litellm@1" in cli("ls").stdout


def test_export_writes_everything_atomically(cli: Cli, tmp_path: Path) -> None:
    body = cli.run_json(*hello_args())
    dest = tmp_path / "exp"
    res = cli("export", body["execution_id"], str(dest))
    assert res.exit_code == 0, res.output
    assert (dest / "outputs" / "text" / "response.txt").read_text() == "Mock response to 1 messages"
    assert json.loads((dest / "determinism.json").read_text())["memo_key"] == body["memo_key"]
    assert (dest / "outputs.json").is_file() and (dest / "action.json").is_file()
    again = cli("export", body["execution_id"], str(dest))
    assert again.exit_code == 2 and "not an empty directory" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "home"]  # no temp dir left


def test_logs_prints_captured_output(cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    assert cli("logs", body["execution_id"]).stdout == "Mock response to 1 messages"
    assert cli("logs", "--stderr", body["execution_id"]).stdout == ""
    # both flags: both streams (the last flag used to win, so --stdout --stderr printed no stdout)
    for flags in (["--stdout", "--stderr"], ["--stderr", "--stdout"]):
        assert cli("logs", *flags, body["execution_id"]).stdout == "Mock response to 1 messages"


def test_export_to_paths_that_cannot_be_directories_is_a_usage_error_and_leaves_nothing(
        cli: Cli, tmp_path: Path) -> None:
    body = cli.run_json(*hello_args())
    (tmp_path / "afile").write_text("")
    (tmp_path / "dangle").symlink_to(tmp_path / "nowhere" / "x")
    for target in (tmp_path / "afile" / "sub", tmp_path / "dangle", tmp_path / ("a" * 300)):
        res = cli("export", body["execution_id"], str(target))
        assert res.exit_code == 2 and "cannot export to" in res.stderr, res.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_export_into_an_empty_current_directory_keeps_it(cli: Cli, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    body = cli.run_json(*hello_args())
    here = tmp_path / "here"
    here.mkdir()
    here.chmod(0o751)
    monkeypatch.chdir(here)
    res = cli("export", body["execution_id"], ".")
    assert res.exit_code == 0, res.output
    assert (here / "determinism.json").is_file() and (here / "outputs").is_dir()
    assert stat.S_IMODE(here.stat().st_mode) == 0o751      # the directory itself was kept, not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "home"]


def test_ids_in_either_case_and_ls_filters_that_cannot_match_are_refused(cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    upper = body["execution_id"].upper()
    assert cli("show", upper).exit_code == 0 and cli("show", upper[:10]).exit_code == 0
    bad_plan = cli("ls", "--plan", "bad key!")
    assert bad_plan.exit_code == 2 and "invalid plan key" in bad_plan.stderr
    bad_ref = cli("ls", "--ref", "not a ref")
    assert bad_ref.exit_code == 2 and "invalid processor ref" in bad_ref.stderr
    assert body["execution_id"] in cli("ls", "--ref", "llm/litellm@1").stdout


READING = [("ls",), ("show", "01ABC"), ("cat", "/artifacts/outputs/a.txt"), ("logs", "01ABC"),
           ("export", "01ABC", "out"), ("stats",), ("du",), ("gc", "--dry-run"), ("verify",), ("pins",),
           ("unpin", "01ABC"), ("plan", "ls"), ("plan", "show", "p"), ("plan", "ledger", "p"),
           ("receipt", "01ABC"), ("explain", "01ABC", "01ABD"), ("audit", "01ABC"),
           ("ui", "--port", "0"), ("remote", "push", "--all", "--remote", "REMOTE")]


@pytest.mark.parametrize("argv", READING, ids=lambda a: " ".join(a[:2]))
def test_a_reading_command_at_a_misspelt_home_creates_nothing(tmp_path: Path, argv: tuple[str, ...]) -> None:
    """A typo in --home: every command that only reads says there is no home there, exit 1,
    and leaves no directory behind (it used to create an empty home and list nothing)."""
    typo = tmp_path / "hmoe"
    cli = Cli(typo, REGISTRY)
    (tmp_path / "receipt.json").write_text("{}")
    given = {"out": str(tmp_path / "out"), "RECEIPT": str(tmp_path / "receipt.json"),
             "REMOTE": (tmp_path / "remote").as_uri()}
    res = cli(*(given.get(a, a) for a in argv))
    setup = 2 if argv[0] == "audit" else 1       # audit's setup mistakes exit 2
    assert res.exit_code == setup and f"no theoryx home at {typo}" in res.stderr, res.output
    assert not typo.exists() and not (tmp_path / "out").exists()
    if "--json" not in argv and argv[0] in ("ls", "stats", "du", "show"):
        body = json.loads(cli(*argv, "--json").stdout)
        assert body["error"]["code"] == "ERR_NO_HOME"


def test_verify_receipt_without_a_home_checks_against_an_empty_store_and_creates_nothing(tmp_path: Path) -> None:
    """An auditor who never ran theoryx (or a misspelt --home): the receipt is still checked, as
    far as it can be without the store, and says so; nothing is left at the path (a home was)."""
    typo = tmp_path / "hmoe"
    (tmp_path / "receipt.json").write_text("{}")
    res = Cli(typo, REGISTRY)("verify-receipt", "--json", str(tmp_path / "receipt.json"))
    body = json.loads(res.stdout)
    assert res.exit_code == 1 and not body["ok"], res.output
    store = [c for c in body["checks"] if c["name"] == "store"]
    assert len(store) == 1 and store[0]["status"] == "skipped", body
    assert store[0]["detail"].startswith(f"no theoryx home at {typo}")
    assert store[0]["detail"].endswith(": checked against an empty store")
    assert not typo.exists()


def test_remote_status_at_a_misspelt_home_creates_nothing(tmp_path: Path) -> None:
    """It reads the home's remote.json if there is one, and needs no home otherwise."""
    typo = tmp_path / "hmoe"
    (tmp_path / "remote").mkdir()
    res = Cli(typo, REGISTRY)("remote", "status", "--json", "--remote", (tmp_path / "remote").as_uri())
    assert res.exit_code == 0 and json.loads(res.stdout)["reachable"] is True, res.output
    assert not typo.exists()


def test_export_under_a_file_says_so_and_a_new_directory_gets_the_usual_mode(cli: Cli, tmp_path: Path) -> None:
    body = cli.run_json(*hello_args())
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    res = cli("export", body["execution_id"], str(blocker / "sub"))
    assert res.exit_code == 2 and "cannot export to" in res.stderr and "notes.txt is not a directory" in res.stderr
    umask = os.umask(0)
    os.umask(umask)
    dest = tmp_path / "exported"
    assert cli("export", body["execution_id"], str(dest)).exit_code == 0
    assert stat.S_IMODE(dest.stat().st_mode) == 0o777 & ~umask


@pytest.mark.parametrize("args", [
    ["show", "ab\udcffcdefgh"], ["show", "--json", "ab\udcffcdefgh"], ["logs", "ab\udcffcdefgh"],
    ["receipt", "ab\udcffcdefgh"], ["pin", "ab\udcffcdefgh"], ["unpin", "ab\udcffcdefgh"],
    ["cat", "/artifacts/ab\udcff"], ["cat", "/artifacts/execution/ab\udcffcdefgh/stdout.log"],
])
def test_an_id_or_world_path_of_undecodable_bytes_is_not_found(cli: Cli, args: list[str]) -> None:
    # a non-UTF-8 argument (its bytes become lone surrogates) reached LMDB's key encoding:
    # ERR_INTERNAL (UnicodeEncodeError) and a crash report instead of "not found"
    cli.run_json(*hello_args())
    res = cli(*args)
    assert res.exit_code == 1, res.output
    assert "internal error" not in res.stderr
    assert "no execution" in res.stderr or "not pinned" in res.stderr
    if "--json" in args:
        assert json.loads(res.stdout)["error"]["code"] == "ERR_NOT_FOUND"
