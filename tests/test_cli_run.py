"""``theoryx run`` through CliRunner: the seed examples, output shapes and every error message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import blake3
import pytest
from theoryx_testing import HELLO, Cli, hello_args

from cas import Store

RESPONSE = "Mock response to 1 messages"
METADATA = {"cost_usd": 0.0, "finish_reason": "stop", "mock": True, "model": "gpt-4o-mini",
            "usage": {"completion_tokens": 5, "prompt_tokens": 1, "total_tokens": 6}}
EID = r"[0-9a-z]{26}"


def human_output(cache_line: str) -> str:
    """The whole human output of the hello run, as a regular expression."""
    metadata = "\n".join("    " + line for line in json.dumps(METADATA, indent=2).splitlines())
    return (f"Processor completed successfully\n{cache_line}\nExecution: ({EID})\nOutputs:\n"
            f"  /artifacts/outputs/metadata.json:\n{re.escape(metadata)}\n"
            f"  /artifacts/outputs/text/response.txt:\n    {RESPONSE}\n")


def blob(cli: Cli, cid: str) -> bytes:
    """The stored bytes of ``cid``, checked to be the blob the cid names (its BLAKE3)."""
    data = Store(cli.home / "cas-v1").read(cid)
    assert cid == "b3:" + blake3.blake3(data).hexdigest()
    return data


def test_basic_mock_run_prints_outputs(cli: Cli) -> None:
    res = cli("run", *hello_args())
    assert (res.exit_code, res.stderr) == (0, ""), res.output
    pattern = human_output(r"Cache: miss \(executed on mock; the run took \d+ ms in all\)")
    assert re.fullmatch(pattern, res.stdout), res.stdout


def test_repeat_run_is_a_cache_hit(cli: Cli) -> None:
    first = cli("run", *hello_args())
    second = cli("run", *hello_args())
    assert (first.exit_code, first.stderr, second.exit_code, second.stderr) == (0, "", 0, "")
    miss = re.fullmatch(human_output(r"Cache: miss \(executed on mock; the run took \d+ ms in all\)"), first.stdout)
    assert miss is not None, first.stdout
    hit = re.fullmatch(human_output(f"Cache: hit \\(result of execution {miss[1]}; nothing executed\\)"),
                       second.stdout)
    assert hit is not None, second.stdout
    assert hit[1] != miss[1]           # a hit is an execution record of its own


def test_json_output_shape(cli: Cli) -> None:
    body = cli.run_json(*hello_args())
    assert body["_exit"] == 0
    assert body["status"] == "success"
    assert body["ref"] == "llm/litellm@1"
    assert body["adapter"] == "mock"
    assert body["cache"] == "miss"
    assert body["memo_key"].startswith("b3:") and len(body["memo_key"]) == 67
    paths = [o["path"] for o in body["outputs"]]
    assert paths == sorted(paths) == ["/artifacts/outputs/metadata.json", "/artifacts/outputs/text/response.txt"]
    meta, resp = body["outputs"]
    assert blob(cli, resp["cid"]) == RESPONSE.encode()
    assert json.loads(blob(cli, meta["cid"])) == METADATA
    assert [o["size_bytes"] for o in body["outputs"]] == [len(blob(cli, o["cid"])) for o in body["outputs"]]
    assert (meta["mime"], resp["mime"]) == ("application/json", "text/plain")
    eid = body["execution_id"]
    assert body["index_path"] == f"/artifacts/execution/{eid}/outputs.json"
    assert body["receipt_path"] == f"/artifacts/execution/{eid}/determinism.json"
    assert set(body["meta"]) == {"env_fingerprint", "duration_ms"}
    again = cli.run_json(*hello_args())
    assert again["cache"] == "hit"
    assert again["memo_key"] == body["memo_key"]
    assert [o["cid"] for o in again["outputs"]] == [o["cid"] for o in body["outputs"]]
    assert again["execution_id"] != eid


def test_json_stdout_is_exactly_one_object(cli: Cli) -> None:
    res = cli("run", "--json", "--stream", *hello_args())
    assert res.exit_code == 0
    body = json.loads(res.stdout)  # raises if anything else was printed on stdout
    assert res.stdout == json.dumps(body) + "\n"
    assert (body["status"], body["cache"]) == ("success", "miss")
    assert blob(cli, body["outputs"][1]["cid"]) == RESPONSE.encode()
    assert res.stderr == RESPONSE + "\n"      # the stream goes to stderr under --json


def test_plan_is_recorded(cli: Cli) -> None:
    body = cli.run_json(*hello_args("--plan", "team-a"))
    show = json.loads(cli("show", "--json", body["execution_id"]).stdout)
    assert show["plan"] == "team-a"
    listed = json.loads(cli("ls", "--plan", "team-a", "--json").stdout)
    assert [r["execution_id"] for r in listed] == [body["execution_id"]]


def test_multiple_attachments_are_rewritten(cli: Cli, tmp_path: Path) -> None:
    a = tmp_path / "notes.txt"
    a.write_text("alpha")
    b = tmp_path / "pic.png"
    b.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    inputs = {"messages": [{"role": "user", "content": [{"$attach": "doc"}, {"$attach": "img"}]}]}
    body = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(inputs),
                        "--attach", f"doc={a}", "--attach", f"img={b}")
    assert body["status"] == "success", body
    action_cid = json.loads(cli("show", "--json", body["execution_id"]).stdout)["action_cid"]
    action = json.loads(cli("cat", action_cid).stdout)
    content = action["inputs"]["messages"][0]["content"]
    assert content[0]["$artifact"].endswith("/notes.txt") and content[0]["mime"] == "text/plain"
    assert content[1]["mime"] == "image/png"
    assert content[0]["$artifact"] == f"/artifacts/inputs/{content[0]['cid']}/notes.txt"
    assert str(tmp_path) not in json.dumps(action)
    assert cli("cat", content[0]["$artifact"]).stdout == "alpha"


def test_custom_write_prefix(cli: Cli) -> None:
    body = cli.run_json(*hello_args("--write-prefix", "/artifacts/custom/run1/"))
    assert [o["path"] for o in body["outputs"]] == [
        "/artifacts/custom/run1/metadata.json", "/artifacts/custom/run1/text/response.txt"]
    assert cli("cat", "/artifacts/custom/run1/text/response.txt").stdout == "Mock response to 1 messages"


def test_write_prefix_with_execution_id_is_expanded(cli: Cli) -> None:
    body = cli.run_json(*hello_args("--write-prefix", "/artifacts/runs/{execution_id}/"))
    eid = body["execution_id"]
    assert body["outputs"][0]["path"].startswith(f"/artifacts/runs/{eid}/")


def test_write_prefix_errors_are_exact(cli: Cli) -> None:
    cases = {
        "/artifacts/outputs": "Error: --write-prefix must end with /",
        "/tmp/out/": "Error: --write-prefix must start with /artifacts/",
        "/artifacts/a/../b/": "Error: --write-prefix must not contain . or .. segments",
        "/artifacts/a//b/": "Error: --write-prefix must not contain empty segments (//)",
    }
    for prefix, message in cases.items():
        res = cli("run", *hello_args("--write-prefix", prefix))
        assert res.exit_code == 2, prefix
        assert res.stderr.strip() == message


def test_missing_attachment_file(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    res = cli("run", *hello_args("--attach", f"doc={missing}"))
    assert res.exit_code == 2
    assert res.stderr.strip() == f"Error: Attachment file not found: {missing}"


def test_an_attachment_under_an_unknown_users_home_is_not_found(cli: Cli) -> None:
    """``~nosuchuser/x`` is left as written, as a shell leaves it (before: RuntimeError "Could not
    determine home directory.", ERR_INTERNAL and a crash file)."""
    res = cli("run", *hello_args("--attach", "doc=~theoryx-no-such-user/x.txt"))
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == "Error: Attachment file not found: ~theoryx-no-such-user/x.txt"


def test_unknown_attach_reference_names_it(cli: Cli) -> None:
    inputs = {"messages": [{"role": "user", "content": {"$attach": "ghost"}}]}
    res = cli("run", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(inputs))
    assert res.exit_code == 2
    assert "'ghost'" in res.stderr


def test_invalid_inputs_json_says_where(cli: Cli) -> None:
    res = cli("run", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", '{"messages": [}')
    assert res.exit_code == 2
    assert "--inputs-json is not valid JSON" in res.stderr and "line 1 column 15" in res.stderr


def test_inputs_file_and_stdin(cli: Cli, tmp_path: Path) -> None:
    f = tmp_path / "in.json"
    f.write_text(json.dumps(HELLO))
    by_file = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-file", str(f))
    res = cli("run", "--json", "--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-file", "-",
              input=json.dumps(HELLO))
    assert json.loads(res.stdout)["memo_key"] == by_file["memo_key"]


def test_schema_violation_is_err_inputs_with_pointer(cli: Cli) -> None:
    body = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1",
                        "--inputs-json", '{"messages": [{"role": "robot", "content": "x"}]}')
    assert body["_exit"] == 1
    assert body["status"] == "error"
    assert body["error"]["code"] == "ERR_INPUTS"
    assert "/messages/0/role" in body["error"]["message"]
    assert body["execution_id"]


def test_missing_required_input(cli: Cli) -> None:
    body = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1")
    assert body["error"]["code"] == "ERR_INPUTS"
    assert "messages" in body["error"]["message"]


def test_unknown_ref_names_registries(cli: Cli) -> None:
    res = cli("run", "--adapter", "mock", "--ref", "llm/nope@1")
    assert res.exit_code == 1
    assert "llm/nope@1 not found" in res.stderr
    assert str(cli.registry / "processors") in res.stderr


def test_malformed_ref_is_usage_error(cli: Cli) -> None:
    res = cli("run", "--adapter", "mock", "--ref", "litellm")
    assert res.exit_code == 2
    assert "ns/name@version" in res.stderr


def test_modal_without_credentials_fails_clearly(cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_CONFIG_PATH", "MODAL_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "no-modal-config"))
    body = cli.run_json("--adapter", "modal", "--ref", "llm/litellm@1", "--inputs-json", json.dumps(HELLO))
    assert body["status"] == "error"
    assert body["error"]["code"] == "ERR_MODAL_CREDENTIALS"
    assert "modal token new" in body["error"]["message"]


def test_save_dir_and_save_first(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "saved"
    first = tmp_path / "first.txt"
    res = cli("run", *hello_args("--save-dir", str(out), "--save-first", str(first)))
    assert res.exit_code == 0, res.output
    assert (out / "text" / "response.txt").read_text() == "Mock response to 1 messages"
    assert json.loads((out / "metadata.json").read_text())["mock"] is True
    assert first.read_text() == "Mock response to 1 messages"


def test_stream_prints_the_response(cli: Cli) -> None:
    res = cli("run", "--stream", *hello_args())
    assert res.stdout.startswith("Mock response to 1 messages")


def test_no_cache_executes_again_and_does_not_count_against_the_hit_rate(cli: Cli) -> None:
    """A --no-cache run never looked the cache up: it is "bypass", not a miss (one run and one
    --no-cache rerun said "0 hits, 2 misses, hit rate 0.0%")."""
    cli("run", *hello_args())
    body = cli.run_json(*hello_args("--no-cache"))
    assert body["cache"] == "bypass"
    assert "Cache: bypassed (not looked up; executed on mock;" in cli("run", *hello_args("--no-cache")).stdout
    assert cli.run_json(*hello_args())["cache"] == "hit"
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["executions"] == {"total": 4, "hits": 1, "misses": 1, "bypassed": 2, "failures": 0}
    assert stats["hit_rate"] == 0.5
    assert "4: 1 hits, 1 misses, 2 bypassed the cache, 0 failed" in cli("stats").stdout


def test_adapter_options_do_not_change_the_key(cli: Cli) -> None:
    a = cli.run_json(*hello_args())
    b = cli.run_json(*hello_args("--adapter-opts-json", '{"timeout": 100}'))
    assert a["memo_key"] == b["memo_key"] and b["cache"] == "hit"


def test_failed_execution_is_not_cached(cli: Cli) -> None:
    bad = cli.run_json(*hello_args("--adapter-opts-json", '{"exit_code": 3}'))
    assert bad["error"]["code"] == "ERR_PROCESSOR_FAILED"
    good = cli.run_json(*hello_args())
    assert good["cache"] == "miss"
    assert good["memo_key"] == json.loads(cli("show", "--json", bad["execution_id"]).stdout)["memo_key"]


def test_human_output_names_the_plan_charge_and_savings(cli: Cli) -> None:
    first = cli("run", *hello_args("--plan", "p", "--adapter-opts-json", '{"cost_usd": 0.25}'))
    assert "Plan: p (charged $0.250000, saved $0.000000)" in first.stdout
    again = cli("run", *hello_args("--plan", "p"))
    assert "Plan: p (charged $0.000000, saved $0.250000)" in again.stdout


def test_build_with_the_mock_adapter_is_a_usage_error(cli: Cli) -> None:
    res = cli("run", *hello_args("--build"))
    assert res.exit_code == 2
    assert "--build" in res.stderr and "mock" in res.stderr


def test_stream_with_json_goes_to_stderr_and_a_hit_replays_it(cli: Cli) -> None:
    first = cli("run", "--json", "--stream", *hello_args())
    assert "Mock response to 1 messages" in first.stderr
    assert json.loads(first.stdout)["cache"] == "miss"
    again = cli("run", "--stream", *hello_args())
    assert again.stdout.startswith("Mock response to 1 messages\n")
    assert "Cache: hit" in again.stdout


@pytest.mark.parametrize("where", ["--ref", "--plan", "--adapter", "inputs"])
def test_a_huge_value_is_echoed_clipped(cli: Cli, where: str) -> None:
    """A 100,000-character value in an error comes back as its head, its length and its tail,
    on stderr and in the --json envelope (it was echoed in full)."""
    huge = "q" * 100_000
    args = {"--ref": ["--adapter", "mock", "--ref", huge, "--inputs-json", "{}"],
            "--plan": [*hello_args(), "--plan", huge],
            "--adapter": ["--adapter", huge, "--ref", "llm/litellm@1", "--inputs-json", "{}"],
            "inputs": ["--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps({"messages": huge})]}
    res = cli("run", "--json", *args[where])
    message = json.loads(res.stdout)["error"]["message"]
    assert res.exit_code in (1, 2) and "[100000 characters]" in message and len(message) < 1000, message
    assert "[100000 characters]" in res.stderr and len(res.stderr) < 1500


def test_clipped_keeps_short_words_and_cuts_long_ones() -> None:
    from theoryx.errors import TheoryxError, clipped

    assert clipped("short 'value'") == "short 'value'"
    long = "x" * 401
    assert clipped(f"bad '{long}' here") == f"bad '{'x' * 159}…[401 characters]…{'x' * 39}' here"
    assert clipped("y" * 400) == "y" * 400
    assert TheoryxError("z" * 5000).message.count("z") == 200 and str(TheoryxError("z" * 5000)).endswith("z" * 40)


def test_a_save_target_that_cannot_be_written_is_refused_before_anything_runs(cli: Cli, tmp_path: Path) -> None:
    """--save-first or --save-dir under a regular file: a usage error before the run (it ran,
    was charged and recorded, then exited 2 without its execution id)."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    for option in ("--save-first", "--save-dir"):
        res = cli("run", "--json", *hello_args(), option, str(blocker / "x"))
        body = json.loads(res.stdout)
        assert res.exit_code == 2 and body["execution_id"] is None and "is not a directory" in body["error"]["message"]
    assert not cli.home.exists(), "nothing ran: not even a home was made"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_save_target_where_nothing_can_be_created_is_refused_before_anything_runs(cli: Cli, tmp_path: Path) -> None:
    """--save-dir /proc/x (a directory that exists but takes no new entry, even for root): the
    run executed, was charged and recorded, and only then failed to save. Now a usage error
    before the run, naming the directory; the probe leaves nothing behind."""
    for option, target in (("--save-dir", "/proc/x"), ("--save-first", "/proc/x/y.txt"), ("--save-dir", "/proc")):
        res = cli("run", "--json", *hello_args(), option, target)
        body = json.loads(res.stdout)
        assert res.exit_code == 2 and body["execution_id"] is None, (option, target, body)
        assert body["error"]["message"].startswith(f"cannot write {option} {target}: ") and "/proc" in \
            body["error"]["message"], body
    assert not cli.home.exists(), "nothing ran: not even a home was made"
    out = tmp_path / "saved"
    res = cli("run", *hello_args(), "--save-dir", str(out))
    assert res.exit_code == 0 and sorted(p.name for p in out.iterdir()) == ["metadata.json", "text"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".theoryx-probe-")] == []


@pytest.mark.parametrize("extra", [["--plan", "a/b"], ["--adapter-opts-json", "{"], ["--adapter-opts-json", "[1]"],
                                   ["--write-prefix", "x"], ["--salt", "a\udcff"]])
def test_a_usage_error_of_run_creates_no_home(cli: Cli, extra: list[str]) -> None:
    """A malformed plan key or adapter options on a fresh home: exit 2, and a new, empty home
    was left behind (the request was built after the session opened the home)."""
    res = cli("run", "--json", *hello_args(*extra))
    body = json.loads(res.stdout)
    assert res.exit_code == 2 and body["status"] == "error", body
    assert body["execution_id"] is None and not cli.home.exists(), "a usage error created the home"


def test_a_salt_of_bytes_that_are_not_utf8_is_a_usage_error_naming_it(cli: Cli,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`--salt $'\\xff'` (or THEORYX_SALT) reaches Python as a lone surrogate: it was ERR_INPUTS
    "inputs have no canonical JSON form" (the inputs were fine) with a failed record."""
    res = cli("run", "--json", *hello_args("--salt", "\udcff"))
    assert res.exit_code == 2 and json.loads(res.stdout)["error"] == {
        "code": "ERR_USAGE", "message": "--salt must be valid Unicode text (it holds a lone surrogate): '\\udcff'"}
    monkeypatch.setenv("THEORYX_SALT", "x\udcff")
    res = cli("run", "--json", *hello_args())
    assert res.exit_code == 2 and "--salt must be valid Unicode text" in res.stderr
    assert not cli.home.exists()


def test_a_seed_too_large_to_record_is_refused_before_an_execution_exists(cli: Cli) -> None:
    res = cli("run", "--json", *hello_args("--seed", "99999999999999999999"))
    body = json.loads(res.stdout)
    assert res.exit_code == 2 and body["execution_id"] is None and "out of range" in body["error"]["message"]
    assert "could not be recorded" not in res.stderr


@pytest.mark.parametrize("option", ["--registry", "--remote", "--inputs-file"])
def test_empty_registry_remote_and_inputs_file_are_refused(cli: Cli, option: str) -> None:
    res = cli("run", *hello_args(), option, "")
    assert res.exit_code == 2 and "must not be empty" in res.stderr


def test_a_save_that_fails_after_a_charged_run_reports_the_runs_charge(cli: Cli, tmp_path: Path) -> None:
    """The run succeeded and was charged, then --save-dir failed: the error envelope said plan
    null and cost 0 (defaults no record had set)."""
    out = tmp_path / "sd"
    (out / "metadata.json").mkdir(parents=True)         # a directory where a file will be saved
    body = cli.run_json(*hello_args("--plan", "pa", "--save-dir", str(out)))
    assert body["_exit"] == 1 and body["status"] == "error", body
    shown = json.loads(cli("show", "--json", body["execution_id"]).stdout)
    assert shown["status"] == "success" and shown["cost_micros"] > 0
    assert (body["plan"], body["cost_micros"], body["overrun_micros"]) == ("pa", shown["cost_micros"], 0), body
