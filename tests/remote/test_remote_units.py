"""The team cache's configuration, layout and CLI; credentials never shown; a local hit never
loads obstore, even with a remote configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import KeyPair, Teammate, executions
from nginx_server import PASSWORD, USER, Nginx
from notices_testing import captured_notices, texts
from theoryx_testing import REPO

from theoryx.errors import RemoteConfigError, RemoteError, RemoteRejected
from theoryx.pipeline.result import RunResult
from theoryx.remote import config, layout
from theoryx.remote.client import RemoteStore, scrub


def test_the_url_comes_from_the_run_then_the_environment_then_remote_json(tmp_path: Path) -> None:
    (tmp_path / "remote.json").write_text(json.dumps({"url": "s3://bucket/file", "upload": True}))
    assert config.load(tmp_path, None, env={}).url == "s3://bucket/file"  # type: ignore[union-attr]
    env = {"THEORYX_REMOTE": "gs://bucket/env/"}
    assert config.load(tmp_path, None, env=env).url == "gs://bucket/env"  # type: ignore[union-attr]
    got = config.load(tmp_path, "http://127.0.0.1:9/run", env=env)
    assert got is not None and got.url == "http://127.0.0.1:9/run" and got.source == "remote" and got.upload
    assert got.timeouts == config.Timeouts(connect_s=2.0, request_s=10.0, stall_s=10.0, transfer_s=600.0, retries=1)
    assert config.load(tmp_path / "none", None, env={}) is None


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://host/x", "scheme must be one of"),
    (f"http://{USER}:{PASSWORD}@127.0.0.1/x", "must not hold credentials"),
    ("https://host/x?sig=abc", "no query"),
    ("s3:///nobucket", "names no host or bucket"),
    ("file:relative/dir", "absolute directory"),
    ("file://", "absolute directory"),
    ("file://otherhost/dir", "absolute directory"),
])
def test_unusable_urls_are_refused_without_echoing_secrets(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(RemoteConfigError) as err:
        config.load(tmp_path, url, env={})
    assert says in err.value.message and PASSWORD not in err.value.message and "sig=abc" not in err.value.message


def test_remote_json_is_checked_key_by_key(tmp_path: Path) -> None:
    for bad, says in [({"url": "file:///x", "uplaod": True}, "unknown key"),
                      ({"url": "file:///x", "timeouts": {"connect_s": 0}}, "above 0"),
                      ({"url": "file:///x", "timeouts": {"transfer_s": 100000}}, "at most 86400"),
                      ({"url": "file:///x", "concurrency": 0}, "concurrency"),
                      ({"url": "file:///x", "trusted_keys": "a.pub"}, "trusted_keys")]:
        (tmp_path / "remote.json").write_text(json.dumps(bad))
        with pytest.raises(RemoteConfigError, match=says):
            config.load(tmp_path, None, env={})


def test_a_remembered_configuration_follows_the_file_and_the_default_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.load remembers what it parsed; any change to what the result depends on is seen at
    the next load: the file rewritten in place (same size), the default signing key appearing."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "remote.json"
    path.write_text(json.dumps({"url": "file:///a", "trusted_keys": ["one.pub"]}))
    first = config.load(tmp_path, None, env={})
    assert first is not None and first.trusted_keys == (tmp_path / "one.pub",) and first.signing_key is None
    assert config.load(tmp_path, None, env={}) is first
    path.write_text(json.dumps({"url": "file:///a", "trusted_keys": ["two.pub"]}))
    second = config.load(tmp_path, None, env={})
    assert second is not None and second.trusted_keys == (tmp_path / "two.pub",)
    key = config.default_signing_key_path()
    key.parent.mkdir(parents=True)
    key.write_text("not read here")
    third = config.load(tmp_path, None, env={})
    assert third is not None and third.signing_key == key
    path.write_text("{")
    with pytest.raises(RemoteConfigError, match="not valid JSON"):
        config.load(tmp_path, None, env={})
    path.unlink()
    assert config.load(tmp_path, None, env={}) is None


def test_the_layout_is_versioned_and_sharded() -> None:
    cid = "b3:" + "ab" * 32
    assert layout.blob_path(cid) == "cas-v1/ab/" + "ab" * 31
    assert layout.entry_path(cid) == "ac-v1/" + "ab" * 32 + ".dsse.json"
    with pytest.raises(RemoteRejected):
        layout.blob_path("b3:../../etc/passwd")


def test_scrub_removes_every_credential_value() -> None:
    env = {"THEORYX_REMOTE_USER": USER, "THEORYX_REMOTE_PASSWORD": PASSWORD, "AWS_SECRET_ACCESS_KEY": "aws-secret-xyz"}
    import base64

    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    text = scrub(f"failed with {PASSWORD}, header Basic {basic} and aws-secret-xyz", env)
    assert PASSWORD not in text and basic not in text and "aws-secret-xyz" not in text


def test_a_credential_astride_the_cut_of_an_error_line_is_never_shown_in_part() -> None:
    from theoryx.remote.client import describe

    token = "supersecrettoken123"
    env = {"THEORYX_REMOTE_TOKEN": token}
    for at in (276, 285, 292):       # the token (from at + 7) straddles character 300 of the line
        line = describe(RuntimeError("x" * at + f"Bearer {token} and more"), env)
        assert token[:3] not in line and "Bearer *" in line, line
        assert len(line) <= 300


def test_a_map_obstore_still_holds_is_left_open_and_the_real_error_stays() -> None:
    import mmap

    from theoryx.remote.client import _release

    mapped = mmap.mmap(-1, 4096)
    held = memoryview(mapped)          # as obstore's abandoned request holds the buffer
    _release(mapped)                   # no BufferError
    assert not mapped.closed
    held.release()
    _release(mapped)
    assert mapped.closed


@pytest.mark.remote
def test_a_failing_remote_never_shows_a_credential(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    alice, _ = teammates
    wrong = PASSWORD + "-wrong"
    monkeypatch.setenv("THEORYX_REMOTE_USER", USER)
    monkeypatch.setenv("THEORYX_REMOTE_PASSWORD", wrong)
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private)
    with captured_notices() as records:
        a = alice.run("secret")
    warnings = texts(records, "warning")
    assert a.cache == "miss" and len(warnings) == 1, warnings
    assert "authentication" in warnings[0] or "401" in warnings[0], warnings
    shown = " ".join(warnings)
    runner = CliRunner()
    base = ["--home", str(alice.home), "--registry", str(alice.registry)]
    push = runner.invoke(cli, [*base, "remote", "push", a.execution_id])
    status = runner.invoke(cli, [*base, "remote", "status", "--json"])
    shown += push.output + push.stderr + status.output + status.stderr + repr(RemoteStore(alice_config(alice)))
    print(f"push exit {push.exit_code}: {push.stderr.strip()}")
    assert push.exit_code == 1 and "ERR" not in push.stdout
    assert wrong not in shown and PASSWORD not in shown
    import base64

    assert base64.b64encode(f"{USER}:{wrong}".encode()).decode() not in shown
    assert json.loads(status.stdout)["credentials"] == ["THEORYX_REMOTE_USER", "THEORYX_REMOTE_PASSWORD"]


def alice_config(alice: Teammate) -> config.RemoteConfig:
    got = config.load(alice.home)
    assert got is not None
    return got


@pytest.mark.remote
def test_push_uploads_an_earlier_result_and_status_reports_the_setup(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path,
        writer_env: None) -> None:
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    alice, bob = teammates
    alice.configure(url=nginx.url, upload=False, signing_key=keypairs["alice"].private)
    a = alice.run("later")  # not uploaded: upload is off
    assert not (nginx.root / layout.entry_path(a.memo_key)).exists()
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private,
                    trusted_keys=[str(keypairs["bob"].public)])
    runner = CliRunner()
    base = ["--home", str(alice.home), "--registry", str(alice.registry)]
    res = runner.invoke(cli, [*base, "remote", "push", a.execution_id, "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert body["pushed"][0]["memo_key"] == a.memo_key and body["pushed"][0]["uploaded"] >= 4
    again = json.loads(runner.invoke(cli, [*base, "remote", "push", "--all", "--json"]).stdout)
    assert again["pushed"][0]["uploaded"] == 0  # every blob already there: HEAD, no PUT
    status = json.loads(runner.invoke(cli, [*base, "remote", "status", "--json"]).stdout)
    assert status["status"] == "success" and "error" not in status
    assert status["reachable"] and status["upload"] and status["signing_key"] == keypairs["alice"].keyid
    assert [k["keyid"] for k in status["trusted_keys"]] == [keypairs["bob"].keyid]
    bob.configure(url=nginx.ro_url, trusted_keys=[str(keypairs["alice"].public)])
    assert bob.run("later").cache == "remote" and executions(counter) == 1


@pytest.mark.remote
def test_the_cli_prints_a_remote_hit_and_a_local_hit_never_loads_obstore(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path,
        writer_env: None, registry: Path) -> None:
    alice, bob = teammates
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private)
    alice.run("cli")
    bob.configure(url=nginx.ro_url, trusted_keys=[str(keypairs["alice"].public)])
    args = ["-m", "theoryx", "--home", str(bob.home), "--registry", str(registry), "run", "--adapter", "mock",
            "--ref", "test/echo@1", "--inputs-json", json.dumps({"text": "cli", "big": 0})]
    first = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "Cache: remote hit (result of execution" in first.stdout and nginx.ro_url.rstrip("/") in first.stdout
    probe = ("import sys, runpy; sys.argv = ['theoryx'] + sys.argv[1:]\n"
             "try:\n    runpy.run_module('theoryx', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "sys.stderr.write('OBSTORE=%s\\n' % ('obstore' in sys.modules))\n")
    second = subprocess.run([sys.executable, "-c", probe, *args[2:]], capture_output=True, text=True, cwd=REPO,
                            timeout=60)
    assert "Cache: hit" in second.stdout, second.stdout + second.stderr
    assert "OBSTORE=False" in second.stderr, second.stderr
    assert executions(counter) == 1


@pytest.mark.parametrize("local_fault", [False, True])
def test_a_download_blames_the_remote_only_for_bytes_that_are_not_the_blob(
        tmp_path: Path, local_fault: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes that do not hash to the cid (or are too many): RemoteRejected. A fault of the local
    store while writing them: that store error, as it is, not "the remote blob does not match"."""
    from cas import CasError, Store, cid_of_bytes
    from theoryx.errors import RemoteRejected
    from theoryx.remote.client import RemoteStore
    from theoryx.remote.config import RemoteConfig

    served = tmp_path / "remote"
    (served / "cas-v1").mkdir(parents=True)
    data = b"the blob's bytes"
    cid = cid_of_bytes(data)
    (served / "cas-v1" / "blob").write_bytes(data if local_fault else b"x" * len(data))   # same size, other bytes
    store = Store(tmp_path / "local")
    if local_fault:
        def broken(*args: object, **kwargs: object) -> None:
            raise CasError("the temp directory kept disappearing")

        monkeypatch.setattr(store, "put_chunks", broken)
    remote = RemoteStore(RemoteConfig(url=served.as_uri(), source="test"))
    expected = CasError if local_fault else RemoteRejected
    with pytest.raises(expected) as raised:
        remote.download("cas-v1/blob", cid, store, len(data))
    assert local_fault == (not isinstance(raised.value, RemoteRejected))
    assert list(store.iter_blobs()) == []


def test_a_file_remote_is_never_created_by_reading_or_a_status_check(tmp_path: Path) -> None:
    """Like a bucket, a file remote's directory must exist: a status check or a lookup that
    creates it would turn a typo into an empty team cache."""
    missing = tmp_path / "typo" / "remote"
    env = {"THEORYX_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "theoryx", "remote", "status", "--json", "--remote",
                           missing.as_uri()], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 1
    body = json.loads(proc.stdout)
    assert body["reachable"] is False and "does not exist (create it first)" in body["problem"]
    assert body["status"] == "error" and body["error"] == {"code": "ERR_REMOTE", "message": body["problem"]}
    assert not (tmp_path / "typo").exists()
    with pytest.raises(RemoteError, match="does not exist"):
        RemoteStore(config.RemoteConfig(url=missing.as_uri(), source="test"))
    missing.mkdir(parents=True)
    assert RemoteStore(config.RemoteConfig(url=missing.as_uri(), source="test")).size("ac-v1/none") is None


def test_a_remote_json_that_is_a_fifo_or_too_large_is_refused_without_blocking(tmp_path: Path) -> None:
    """Every local miss reads <home>/remote.json: a FIFO there hung every run (and `remote
    status`) forever; a huge file was read whole at every miss. Both are refused at once: the
    run goes on locally with one warning, `remote status` is ERR_REMOTE_CONFIG."""
    home = tmp_path / "home"
    env = {**os.environ, "THEORYX_HOME": str(home), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("THEORYX_REMOTE", None)
    run = [sys.executable, "-m", "theoryx", "--registry", str(REPO / "registry"), "run", "--adapter", "mock",
           "--ref", "llm/litellm@1", "--json"]
    first = subprocess.run([*run, "--inputs-json", json.dumps({"messages": [{"role": "user", "content": "0"}]})],
                           cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    path = home / "remote.json"
    os.mkfifo(path)
    for n, says in [(1, "is not a regular file"), (2, "more than the")]:
        if n == 2:
            path.unlink()
            with open(path, "wb") as f:
                f.truncate(config.MAX_CONFIG_BYTES + 1)
        inputs = json.dumps({"messages": [{"role": "user", "content": str(n)}]})
        proc = subprocess.run([*run, "--inputs-json", inputs], cwd=REPO, capture_output=True, text=True,
                              timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["cache"] == "miss"
        assert proc.stderr.count("Warning: team cache disabled") == 1 and says in proc.stderr, proc.stderr
        status = subprocess.run([sys.executable, "-m", "theoryx", "remote", "status", "--json"], cwd=REPO,
                                capture_output=True, text=True, timeout=60, env=env)
        assert status.returncode == 1 and "Traceback" not in status.stderr
        assert json.loads(status.stdout)["error"]["code"] == "ERR_REMOTE_CONFIG", status.stdout


@pytest.mark.remote
@pytest.mark.parametrize("only", ["THEORYX_REMOTE_USER", "THEORYX_REMOTE_PASSWORD"])
def test_status_reports_half_of_a_basic_auth_pair_as_sending_no_credentials(
        nginx: Nginx, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
        monkeypatch: pytest.MonkeyPatch, only: str) -> None:
    """With one of the basic-auth pair set the client sends no Authorization at all: `remote
    status` said "credentials: THEORYX_REMOTE_USER", exit 0, and every upload then failed 401."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    alice, _ = teammates
    alice.configure(url=nginx.url, upload=True, signing_key=keypairs["alice"].private)
    for name in ("THEORYX_REMOTE_USER", "THEORYX_REMOTE_PASSWORD", "THEORYX_REMOTE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(only, PASSWORD if only.endswith("PASSWORD") else USER)
    res = CliRunner().invoke(cli, ["--home", str(alice.home), "remote", "status", "--json"])
    body = json.loads(res.stdout)
    assert res.exit_code == 1 and body["status"] == "error" and body["reachable"], res.output
    assert body["error"]["code"] == "ERR_REMOTE_CONFIG" and "no credentials are sent" in body["problem"]
    assert PASSWORD not in res.output
    other = "THEORYX_REMOTE_PASSWORD" if only.endswith("USER") else "THEORYX_REMOTE_USER"
    monkeypatch.setenv(other, PASSWORD if other.endswith("PASSWORD") else USER)
    res = CliRunner().invoke(cli, ["--home", str(alice.home), "remote", "status", "--json"])
    body = json.loads(res.stdout)
    assert res.exit_code == 0 and body["problem"] is None, res.output
    assert body["credentials_sent"] == ["THEORYX_REMOTE_USER", "THEORYX_REMOTE_PASSWORD"]
    # with a token too, the token alone is sent: status says which are ignored (it said nothing)
    monkeypatch.setenv("THEORYX_REMOTE_TOKEN", "t0ken-value")
    body = json.loads(CliRunner().invoke(cli, ["--home", str(alice.home), "remote", "status", "--json"]).stdout)
    assert body["credentials_sent"] == ["THEORYX_REMOTE_TOKEN"] and len(body["credentials"]) == 3
    text = CliRunner().invoke(cli, ["--home", str(alice.home), "remote", "status"]).output
    assert "(sent: THEORYX_REMOTE_TOKEN; ignored: THEORYX_REMOTE_USER, THEORYX_REMOTE_PASSWORD)" in text, text
    assert "t0ken-value" not in text


def _file_remote_pair(tmp_path: Path, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair],
                      text: str) -> tuple[str, Teammate, RunResult, RunResult]:
    """Alice uploads a run of ``text`` to a ``file://`` team cache that Bob trusts her on, then
    Bob's identical run is a remote hit: ``(the remote's url, bob, alice's result, bob's)``."""
    shared = tmp_path / "shared"
    shared.mkdir()
    alice, bob = teammates
    alice.configure(url=shared.as_uri(), upload=True, signing_key=keypairs["alice"].private)
    a = alice.run(text)
    bob.configure(url=shared.as_uri(), trusted_keys=[str(keypairs["alice"].public)])
    b = bob.run(text)
    assert b.cache == "remote"
    return shared.as_uri(), bob, a, b


def test_show_says_which_team_cache_a_remote_hit_came_from(
        tmp_path: Path, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair]) -> None:
    """The record names the remote (`show --json`'s remote_url); the text of `show` said only
    "cache: hit" and "result of: <an execution this home does not have>"."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    url, bob, a, b = _file_remote_pair(tmp_path, teammates, keypairs, "shown")
    alice = teammates[0]
    res = CliRunner().invoke(cli, ["--home", str(bob.home), "show", b.execution_id])
    assert res.exit_code == 0, res.output
    assert f"result of: {a.execution_id}" in res.output
    assert f"fetched from: {url}" in res.output, res.output
    local = CliRunner().invoke(cli, ["--home", str(alice.home), "show", a.execution_id])
    assert "fetched from" not in local.output
    # ls says "remote" as run --json does (it said "hit"); a local hit stays "hit"
    again = bob.run("shown")
    listed = CliRunner().invoke(cli, ["--home", str(bob.home), "ls"]).output.splitlines()
    caches = {line.split()[0]: line.split()[3] for line in listed}
    assert (caches[b.execution_id], caches[again.execution_id]) == ("remote", "hit"), listed


def test_a_remote_hit_stores_no_blob_that_nothing_names(
        tmp_path: Path, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair]) -> None:
    """A remote hit downloaded and stored the producer's receipt blob, which no record or entry
    of the reader's names: `verify` then reported it as an orphan and gc removed it. The receipt
    is in the signed payload; its blob is for other readers of the remote."""
    import json

    from click.testing import CliRunner

    from theoryx.cli.app import cli
    from theoryx.store.handle import open_stores

    _, bob, a, b = _file_remote_pair(tmp_path, teammates, keypairs, "orphan?")
    assert b.output("out.txt").text() == "echo: orphan?"
    res = CliRunner().invoke(cli, ["--home", str(bob.home), "verify", "--json"])
    report = json.loads(res.output)
    assert res.exit_code == 0 and report["orphaned"]["blobs"]["count"] == 0, report
    assert not open_stores(bob.home).cas.exists(a.record.receipt_cid)
    shown = CliRunner().invoke(cli, ["--home", str(bob.home), "receipt", b.execution_id])
    assert shown.exit_code == 0 and json.loads(shown.output)["source_execution"] == a.execution_id


def test_a_map_summary_counts_remote_hits(
        tmp_path: Path, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair]) -> None:
    """map's summary counted a remote hit among the hits without saying so."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    _, bob, _, _ = _file_remote_pair(tmp_path, teammates, keypairs, "first")
    teammates[0].run("second")                  # on the remote, not yet in Bob's home
    items = tmp_path / "items.jsonl"
    texts_ = ("first", "second", "third")
    items.write_text("".join(json.dumps({"inputs": {"text": t, "big": 0}}) + "\n" for t in texts_))
    res = CliRunner().invoke(cli, ["--home", str(bob.home), "--registry", str(bob.registry), "map", "--adapter", "mock",
                                   "--ref", "test/echo@1", "--items", str(items), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "3 items: 2 hits (1 from the team cache), 1 misses, 0 failed" in res.output, res.output


@pytest.mark.parametrize("command", [["status"], ["push", "--all"]])
def test_remote_commands_refuse_an_empty_remote_url(tmp_path: Path, command: list[str]) -> None:
    """`--remote ''` (an unset variable in a script) fell back to remote.json's URL in silence:
    `remote push` published to a remote other than the one named. `run` refuses it already."""
    from click.testing import CliRunner

    from theoryx.cli.app import cli

    shared = tmp_path / "configured"
    shared.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "remote.json").write_text(json.dumps({"url": shared.as_uri()}))
    res = CliRunner().invoke(cli, ["--home", str(home), "remote", *command, "--remote", ""])
    assert res.exit_code == 2 and "must not be empty" in res.output, res.output
    assert not any(shared.iterdir())
