"""Portable receipts: the in-toto/SLSA statement, DSSE signing, keys, and verification."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import Cli, hello_args


def executed(cli: Cli) -> dict[str, Any]:
    body = cli.run_json(*hello_args("--seed", "5"))
    assert body["_exit"] == 0
    return body


def keypair(cli: Cli, tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = tmp_path / "keys" / f"{name}.key"
    res = cli("keygen", "--out", str(key))
    assert res.exit_code == 0, res.output
    return key, key.with_name(key.name + ".pub")


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def verify(cli: Cli, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    res = cli("verify-receipt", "--json", str(path), *args)
    return res.exit_code, json.loads(res.stdout)


def failed(report: dict[str, Any]) -> list[str]:
    return [f"{c['name']}: {c['detail']}" for c in report["checks"] if c["status"] == "failed"]


# -- the statement ------------------------------------------------------------------------------


def test_in_toto_statement_with_slsa_provenance(cli: Cli) -> None:
    run = executed(cli)
    stmt = json.loads(cli("receipt", run["execution_id"], "--format", "in-toto").stdout)
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    assert [s["name"] for s in stmt["subject"]] == [o["path"] for o in run["outputs"]]
    for s, o in zip(stmt["subject"], run["outputs"], strict=True):
        data = cli("cat", o["path"]).stdout_bytes
        assert s["digest"] == {"blake3": o["cid"].removeprefix("b3:"), "sha256": hashlib.sha256(data).hexdigest()}
    bd = stmt["predicate"]["buildDefinition"]
    assert bd["buildType"].startswith("https://theoryx.dev/")
    assert bd["externalParameters"]["ref"] == "llm/litellm@1" and bd["externalParameters"]["seed"] == 5
    assert bd["externalParameters"]["inputs"]["messages"][0]["content"] == "Hello"
    internal = bd["internalParameters"]
    assert internal["memoKey"] == run["memo_key"] and internal["actionCid"] == run["memo_key"]
    assert internal["specDigest"].startswith("b3:") and internal["env"] == {"class": "mock"}
    assert [d["name"] for d in bd["resolvedDependencies"]] == ["action.json", "image-context.json"]
    rd = stmt["predicate"]["runDetails"]
    assert rd["builder"]["id"] == "https://theoryx.dev/builders/mock"
    meta = rd["metadata"]
    assert meta["invocationId"] == run["execution_id"]
    assert meta["startedOn"].endswith("Z") and meta["startedOn"] <= meta["finishedOn"]
    assert {b["name"] for b in rd["byproducts"]} >= {"determinism.json", "outputs.json", "stdout.log", "manifest.json"}


def test_attachments_are_resolved_dependencies_with_their_pointers(cli: Cli, tmp_path: Path) -> None:
    f = write(tmp_path / "data.txt", "a b c\n")
    run = cli.run_json("--adapter", "mock", "--ref", "data/textstats@1", "--inputs-json",
                       '{"file": {"$attach": "f"}}', "--attach", f"f={f}")
    stmt = json.loads(cli("receipt", run["execution_id"], "--format", "in-toto").stdout)
    [dep] = [d for d in stmt["predicate"]["buildDefinition"]["resolvedDependencies"] if d["name"] == "data.txt"]
    assert dep["annotations"] == {"pointers": ["/file"]} and dep["mediaType"] == "text/plain"
    assert dep["digest"]["sha256"] == hashlib.sha256(b"a b c\n").hexdigest()
    assert dep["uri"].startswith("/artifacts/inputs/b3:")


def test_theoryx_format_is_the_stored_receipt(cli: Cli) -> None:
    run = executed(cli)
    printed = cli("receipt", run["execution_id"]).stdout_bytes
    assert printed == cli("cat", run["receipt_path"]).stdout_bytes
    # --out - is stdout, as every '-' of the CLI (it wrote a file named '-' in the working directory)
    dashed = cli("receipt", run["execution_id"], "--out", "-")
    assert dashed.exit_code == 0 and dashed.stdout_bytes == printed
    assert not (Path.cwd() / "-").exists()


# -- DSSE and keys --------------------------------------------------------------------------------


def test_pae_matches_the_dsse_specification_vector() -> None:
    from theoryx.provenance.dsse import pae

    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("t", b"") == b"DSSEv1 1 t 0 "
    assert pae("é", b"x").startswith(b"DSSEv1 2 ")  # LEN counts bytes, not characters


def test_base64_in_envelopes_must_be_canonical() -> None:
    from theoryx.errors import ReceiptError
    from theoryx.provenance.dsse import b64decode

    assert b64decode("aGk=", "p") == b"hi" == b64decode("aGk", "p")
    assert b64decode("-_8=", "p") == b"\xfb\xff"      # URL-safe is accepted
    for bad in ("aGl=", "aGk==", "a Gk=", "+-8=", 5):
        with pytest.raises(ReceiptError):
            b64decode(bad, "p")


def test_keygen_writes_a_private_key_0600_and_a_public_key(cli: Cli, tmp_path: Path) -> None:
    key, pub = keypair(cli, tmp_path, "k")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = cli("keygen", "--out", str(key))
    assert again.exit_code == 2 and "refusing to overwrite" in again.stderr
    old = key.read_bytes()
    assert cli("keygen", "--out", str(key), "--force").exit_code == 0 and key.read_bytes() != old


def test_keygen_default_location_is_the_config_directory(cli: Cli, tmp_path: Path) -> None:
    res = cli("keygen")
    assert res.exit_code == 0
    assert (tmp_path / "config" / "theoryx" / "signing.key").is_file()


def test_a_non_ed25519_key_is_refused(cli: Cli, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = write(tmp_path / "ec.key", pem)
    run = executed(cli)
    res = cli("receipt", run["execution_id"], "--sign", str(key))
    assert res.exit_code == 1 and "not an ed25519 key" in res.stderr


# -- verification ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["in-toto", "theoryx"])
def test_signed_receipt_verifies_with_its_key(cli: Cli, tmp_path: Path, fmt: str) -> None:
    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "mine")
    out = tmp_path / "r.json"
    assert cli("receipt", run["execution_id"], "--format", fmt, "--sign", str(key), "--out", str(out)).exit_code == 0
    env = json.loads(out.read_text())
    expected = "application/vnd.in-toto+json" if fmt == "in-toto" else "application/vnd.theoryx.receipt+json"
    assert env["payloadType"] == expected and len(env["signatures"]) == 1
    code, report = verify(cli, out, "--key", str(pub))
    assert code == 0 and report["ok"] and report["signed"] and report["kind"] == fmt, failed(report)
    names = {c["name"] for c in report["checks"] if c["status"] == "ok"}
    assert {"signature", "format", "blob", "memo key", "parameters", "record"} <= names
    human = cli("verify-receipt", str(out), "--key", str(pub))
    assert human.exit_code == 0 and human.stdout.rstrip().endswith("verified")


def test_receipt_signed_by_another_key_fails(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    key, _ = keypair(cli, tmp_path, "mine")
    _, other_pub = keypair(cli, tmp_path, "other")
    out = tmp_path / "r.json"
    cli("receipt", run["execution_id"], "--format", "in-toto", "--sign", str(key), "--out", str(out))
    code, report = verify(cli, out, "--key", str(other_pub))
    assert code == 1 and not report["ok"]
    assert any(f.startswith("signature: no signature is by key") for f in failed(report))
    env = json.loads(out.read_text())
    env["signatures"][0]["keyid"] = ""            # without the hint the signature itself must fail
    code, report = verify(cli, write(tmp_path / "anon.json", json.dumps(env)), "--key", str(other_pub))
    assert code == 1 and any("does not verify" in f for f in failed(report))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_signed_receipt_with_one_payload_byte_changed_fails(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "mine")
    out = tmp_path / "r.json"
    cli("receipt", run["execution_id"], "--format", "in-toto", "--sign", str(key), "--out", str(out))
    env = json.loads(out.read_text())
    payload = base64.b64decode(env["payload"])
    at = payload.index(b'"seed":5') + len(b'"seed":')
    env["payload"] = base64.b64encode(_flip(payload, at)).decode()    # seed 5 -> 4
    code, report = verify(cli, write(tmp_path / "t.json", json.dumps(env)), "--key", str(pub))
    assert code == 1 and any(f.startswith("signature:") for f in failed(report))
    assert any(f.startswith("parameters:") for f in failed(report))


@pytest.mark.parametrize("where", ["payload", "sig", "payloadType"])
def test_any_single_byte_change_in_a_signed_envelope_fails(cli: Cli, tmp_path: Path, where: str) -> None:
    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "mine")
    out = tmp_path / "r.json"
    cli("receipt", run["execution_id"], "--format", "in-toto", "--sign", str(key), "--out", str(out))
    raw = out.read_bytes()
    field = {"payload": b'"payload": "', "sig": b'"sig": "', "payloadType": b'"payloadType": "'}[where]
    at = raw.index(field) + len(field) + 10
    tampered = raw[:at] + (b"B" if raw[at:at + 1] != b"B" else b"C") + raw[at + 1:]
    code, report = verify(cli, write(tmp_path / "t.json", tampered), "--key", str(pub))
    assert code == 1 and failed(report)


def test_unsigned_in_toto_receipt_with_one_byte_changed_fails(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    raw = cli("receipt", run["execution_id"], "--format", "in-toto").stdout_bytes
    assert verify(cli, write(tmp_path / "ok.json", raw))[0] == 0
    blake = run["outputs"][0]["cid"].removeprefix("b3:").encode()
    at = raw.index(blake) + 5
    tampered = raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:]
    code, report = verify(cli, write(tmp_path / "t.json", tampered))
    assert code == 1 and any("is not in the store" in f for f in failed(report))
    assert any(f.startswith("record:") and "/subject/0/digest/blake3" in f for f in failed(report))


def test_unsigned_theoryx_receipt_with_one_byte_changed_fails(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    raw = cli("receipt", run["execution_id"]).stdout_bytes
    assert verify(cli, write(tmp_path / "ok.json", raw))[0] == 0
    at = raw.index(b'"seed": 5') + len(b'"seed": ')
    code, report = verify(cli, write(tmp_path / "t.json", _flip(raw, at)))
    assert code == 1
    problems = failed(report)
    assert any(f.startswith("parameters:") and "/seed" in f for f in problems)
    assert any(f.startswith("record:") and "/seed" in f for f in problems)


def test_signature_needs_a_key_and_an_unsigned_receipt_refuses_one(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "mine")
    signed = tmp_path / "s.json"
    cli("receipt", run["execution_id"], "--sign", str(key), "--out", str(signed))
    code, report = verify(cli, signed)
    assert code == 1 and any("give --key PUB" in f for f in failed(report))
    plain = write(tmp_path / "p.json", cli("receipt", run["execution_id"]).stdout_bytes)
    code, report = verify(cli, plain, "--key", str(pub))
    assert code == 1 and any("not signed" in f for f in failed(report))


def test_the_default_key_checks_signatures_without_key(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    cli("keygen")
    default = tmp_path / "config" / "theoryx" / "signing.key"
    signed = tmp_path / "s.json"
    cli("receipt", run["execution_id"], "--sign", str(default), "--out", str(signed))
    assert verify(cli, signed)[0] == 0


def test_missing_or_corrupt_blobs_fail_verification(cli: Cli, home: Path, tmp_path: Path) -> None:
    run = executed(cli)
    path = write(tmp_path / "r.json", cli("receipt", run["execution_id"], "--format", "in-toto").stdout_bytes)
    from theoryx.store.handle import open_stores

    cas = open_stores(home).cas
    first, second = run["outputs"][0]["cid"], run["outputs"][1]["cid"]
    assert cas.delete(first)
    blob = cas.path(second)
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes() + b"!")
    code, report = verify(cli, path)
    problems = failed(report)
    assert code == 1
    assert any(f"{first} is not in the store" in f for f in problems)
    assert any(f"{second} does not rehash" in f for f in problems)


def test_an_altered_action_pre_image_fails_the_memo_key_check(cli: Cli, home: Path, tmp_path: Path) -> None:
    run = executed(cli)
    path = write(tmp_path / "r.json", cli("receipt", run["execution_id"]).stdout_bytes)
    from theoryx.store.handle import open_stores

    blob = open_stores(home).cas.path(run["memo_key"])
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes().replace(b'"seed":5', b'"seed":6'))
    code, report = verify(cli, path)
    assert code == 1 and any(f.startswith("memo key:") for f in failed(report))


def test_receipt_for_another_store_skips_the_record_check(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    raw = cli("receipt", run["execution_id"], "--format", "in-toto").stdout_bytes
    other = Cli(tmp_path / "other-home", cli.registry)
    code, report = verify(other, write(tmp_path / "r.json", raw))
    assert code == 1
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["record"] == "skipped" and statuses["memo key"] == "failed"


def test_garbage_is_reported_not_raised(cli: Cli, tmp_path: Path) -> None:
    for data in ("not json", "[]", '{"payloadType": "x", "signatures": [], "payload": ""}',
                 '{"_type": "https://in-toto.io/Statement/v1", "predicateType": "nope"}',
                 '{"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",'
                 ' "subject": [1]}'):
        code, report = verify(cli, write(tmp_path / "g.json", data))
        assert code == 1 and not report["ok"], data


def test_a_receipt_nested_too_deeply_fails_its_format_check(cli: Cli, tmp_path: Path) -> None:
    deep = write(tmp_path / "deep.json", "[" * 200_000 + "]" * 200_000)
    code, report = verify(cli, deep)
    assert code == 1 and failed(report) == ["format: nested too deeply"]


@pytest.mark.parametrize("args", [["receipt", "{id}", "--sign", ""], ["receipt", "{id}", "--out", ""],
                                  ["keygen", "--out", ""], ["verify-receipt", ""], ["export", "{id}", ""],
                                  ["ls", "--ref", ""], ["ls", "--plan", ""]],
                         ids=["receipt --sign", "receipt --out", "keygen --out", "verify-receipt FILE", "export DIR",
                              "ls --ref", "ls --plan"])
def test_an_empty_value_is_refused_not_taken_as_absent(cli: Cli, args: list[str]) -> None:
    """`receipt --sign ''` printed an unsigned receipt and exited 0."""
    run = executed(cli)
    res = cli(*[a.replace("{id}", run["execution_id"]) for a in args])
    assert res.exit_code == 2 and "must not be empty" in res.stderr, res.output
    assert res.stdout == ""


@pytest.mark.parametrize("command", [["show", ""], ["logs", ""], ["receipt", ""], ["pin", ""], ["unpin", ""],
                                     ["audit", ""], ["cat", "/artifacts/execution//determinism.json"]])
def test_an_empty_execution_id_is_not_found(cli: Cli, command: list[str]) -> None:
    executed(cli)
    res = cli(*command)
    assert res.exit_code in (1, 2) and "internal error" not in res.output, res.output
    assert "execution ''" in res.stderr or "not found" in res.stderr, res.stderr


FOREIGN_ID = "01m8t5pk1bj2qgdp6jbkgrt7b0"   # an execution this store never had


def test_a_receipt_edited_to_name_other_blobs_of_the_store_fails_its_outputs_check(cli: Cli, tmp_path: Path) -> None:
    """Both outputs of the run exist in the store; swapping them (and the id, so the record check
    is skipped) must not verify: the manifest, bound to the memo key by the cache, lists them."""
    run = executed(cli)
    doc = json.loads(cli("receipt", run["execution_id"]).stdout)
    doc["execution_id"] = FOREIGN_ID
    honest = write(tmp_path / "honest.json", json.dumps(doc))
    code, report = verify(cli, honest)
    assert code == 0 and [c["status"] for c in report["checks"] if c["name"] == "outputs"] == ["ok"], report
    (a, b) = (doc["outputs"][0], doc["outputs"][1])
    a["cid"], b["cid"], a["size_bytes"], b["size_bytes"] = b["cid"], a["cid"], b["size_bytes"], a["size_bytes"]
    doc["output_cids"] = {o["path"]: o["cid"] for o in doc["outputs"]}
    code, report = verify(cli, write(tmp_path / "swapped.json", json.dumps(doc)))
    assert code == 1 and [f.split(":")[0] for f in failed(report)] == ["outputs"], report
    del doc["outputs"][1]
    doc["output_cids"] = {o["path"]: o["cid"] for o in doc["outputs"]}
    assert verify(cli, write(tmp_path / "dropped.json", json.dumps(doc)))[0] == 1


def test_an_unsigned_receipt_nothing_in_the_store_binds_fails(cli: Cli, tmp_path: Path) -> None:
    from theoryx.store import action_cache
    from theoryx.store.handle import open_stores

    run = executed(cli)
    doc = json.loads(cli("receipt", run["execution_id"]).stdout)
    doc["execution_id"] = FOREIGN_ID
    action_cache.delete(open_stores(cli.home).db, run["memo_key"])
    code, report = verify(cli, write(tmp_path / "unbound.json", json.dumps(doc)))
    assert code == 1 and any(f.startswith("outputs: nothing binds manifest") for f in failed(report)), report


def test_an_in_toto_statement_with_swapped_subjects_fails(cli: Cli, tmp_path: Path) -> None:
    run = executed(cli)
    stmt = json.loads(cli("receipt", run["execution_id"], "--format", "in-toto").stdout)
    stmt["predicate"]["runDetails"]["metadata"]["invocationId"] = FOREIGN_ID
    code, report = verify(cli, write(tmp_path / "honest.json", json.dumps(stmt)))
    assert code == 0, report
    s0, s1 = stmt["subject"][0], stmt["subject"][1]
    s0["digest"], s1["digest"] = s1["digest"], s0["digest"]
    code, report = verify(cli, write(tmp_path / "swapped.json", json.dumps(stmt)))
    assert code == 1 and [f.split(":")[0] for f in failed(report)] == ["outputs"], report


def test_a_receipt_naming_an_output_path_twice_cannot_smuggle_in_another_runs_blob(
        cli: Cli, tmp_path: Path) -> None:
    """Another run's output blob (in the store) added under a path the receipt already names: the
    claimed outputs were compared as a dict, so only the last entry of a path was checked against
    the manifest and the forged receipt verified (in-toto subjects and the theoryx format alike)."""
    good = executed(cli)
    two = [{"role": "user", "content": "EVIL"}, {"role": "user", "content": "x"}]
    evil = cli.run_json("--adapter", "mock", "--ref", "llm/litellm@1", "--inputs-json", json.dumps({"messages": two}))
    assert evil["_exit"] == 0
    stmt = json.loads(cli("receipt", good["execution_id"], "--format", "in-toto").stdout)
    other = json.loads(cli("receipt", evil["execution_id"], "--format", "in-toto").stdout)
    stmt["predicate"]["runDetails"]["metadata"]["invocationId"] = FOREIGN_ID
    assert verify(cli, write(tmp_path / "honest-intoto.json", json.dumps(stmt)))[0] == 0
    smuggled, name = next((s, s["name"]) for s in other["subject"] for t in stmt["subject"]
                          if s["name"] == t["name"] and s["digest"] != t["digest"])
    stmt["subject"].insert(0, smuggled)
    code, report = verify(cli, write(tmp_path / "forged-intoto.json", json.dumps(stmt)))
    assert code == 1 and failed(report) == [f"outputs: the receipt names {name} more than once"], report

    doc = json.loads(cli("receipt", good["execution_id"]).stdout)
    theirs = json.loads(cli("receipt", evil["execution_id"]).stdout)
    doc["execution_id"] = FOREIGN_ID
    extra = next(o for o in theirs["outputs"] for t in doc["outputs"]
                 if o["path"] == t["path"] and o["cid"] != t["cid"])
    doc["outputs"].insert(0, extra)
    code, report = verify(cli, write(tmp_path / "forged.json", json.dumps(doc)))
    assert code == 1 and [f.split(":")[0] for f in failed(report)] == ["outputs"], report


@pytest.mark.parametrize("field, value", [("mime", "application/x-msdownload"), ("size_bytes", 1)])
def test_a_receipt_claiming_another_type_or_size_for_an_output_fails(
        cli: Cli, tmp_path: Path, field: str, value: object) -> None:
    """Only paths and cids were compared with the manifest: a receipt that said an output was
    an executable verified."""
    run = executed(cli)
    doc = json.loads(cli("receipt", run["execution_id"]).stdout)
    doc["execution_id"] = FOREIGN_ID
    doc["outputs"][1][field] = value
    code, report = verify(cli, write(tmp_path / "forged.json", json.dumps(doc)))
    assert code == 1 and "outputs" in [f.split(":")[0] for f in failed(report)], report


def test_a_receipt_naming_a_key_twice_is_refused_not_read_one_way(cli: Cli, tmp_path: Path) -> None:
    """Python keeps a duplicate key's last value, other verifiers the first: such a receipt is
    not I-JSON and fails its format check, signed or not."""
    run = executed(cli)
    text = cli("receipt", run["execution_id"]).stdout
    doubled = text.replace('"execution_id":', f'"execution_id": "{FOREIGN_ID}", "execution_id":', 1)
    assert doubled != text
    code, report = verify(cli, write(tmp_path / "doubled.json", doubled))
    assert code == 1, report
    assert failed(report) == ["format: not I-JSON: the key 'execution_id' appears twice in one object"], report


def test_a_signed_receipt_is_vouched_for_by_its_signature_when_the_store_no_longer_binds_it(
        cli: Cli, tmp_path: Path) -> None:
    from theoryx.store import action_cache, executions
    from theoryx.store.handle import open_stores

    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "mine")
    signed = tmp_path / "s.json"
    assert cli("receipt", run["execution_id"], "--sign", str(key), "--out", str(signed)).exit_code == 0
    db = open_stores(cli.home).db
    action_cache.delete(db, run["memo_key"])
    db.write(lambda txn: executions.drop_in(txn, db, run["execution_id"]))
    code, report = verify(cli, signed, "--key", str(pub))
    assert code == 0, report
    outputs = [c for c in report["checks"] if c["name"] == "outputs"]
    assert [c["status"] for c in outputs] == ["skipped"] and "signature vouches" in outputs[0]["detail"]


def test_keygen_force_that_cannot_write_keeps_the_old_pair_and_says_why(cli: Cli, tmp_path: Path) -> None:
    key, pub = keypair(cli, tmp_path, "kept")
    before = key.read_bytes()
    pub.unlink()
    pub.mkdir()                                     # the new public key cannot go there
    res = cli("keygen", "--out", str(key), "--force")
    assert res.exit_code == 2 and "is a directory" in res.stderr, res.output
    assert key.read_bytes() == before               # was: deleted before the new pair failed to write
    (tmp_path / "afile").write_text("")
    res = cli("keygen", "--out", str(tmp_path / "afile" / "k"))
    assert res.exit_code == 1 and "cannot write the key pair" in res.stderr and "internal" not in res.output
    assert sorted(p.name for p in key.parent.iterdir()) == ["kept.key", "kept.key.pub"]   # no temp files


@pytest.mark.parametrize("fmt", ["theoryx", "in-toto"])
def test_a_receipt_claiming_another_adapter_or_environment_fails(cli: Cli, tmp_path: Path, fmt: str) -> None:
    """The pre-image fixes where a run ran (its environment class, image and fingerprint): a
    receipt of a mock run edited to claim modal, a container or another fingerprint fails the
    environment check (it came out "verified"), with the execution id changed too so that no
    record of this store catches it first."""
    run = executed(cli)
    doc = json.loads(cli("receipt", run["execution_id"], "--format", fmt).stdout)
    if fmt == "theoryx":
        doc.update(adapter="modal", env_fingerprint="container linux/amd64", execution_id="01m8zzzzzzzzzzzzzzzzzzzzzz")
    else:
        rd, internal = doc["predicate"]["runDetails"], doc["predicate"]["buildDefinition"]["internalParameters"]
        rd["builder"]["id"] = rd["builder"]["id"].rsplit("/", 1)[0] + "/modal"
        rd["metadata"]["invocationId"] = "01m8zzzzzzzzzzzzzzzzzzzzzz"
        internal.update(env={"class": "container"}, image={"kind": "dockerfile"}, envFingerprint="container x")
    code, report = verify(cli, write(tmp_path / "r.json", json.dumps(doc)))
    assert code == 1 and not report["ok"]
    assert any(f.startswith("environment: differs from the action pre-image") for f in failed(report)), failed(report)
    honest = json.loads(cli("receipt", run["execution_id"], "--format", fmt).stdout)
    code, report = verify(cli, write(tmp_path / "h.json", json.dumps(honest)))
    assert code == 0 and {c["name"]: c["status"] for c in report["checks"]}["environment"] == "ok"


def _corrupt(home: Path, cid: str) -> None:
    from theoryx.store.handle import open_stores

    blob = open_stores(home).cas.path(cid)
    os.chmod(blob, 0o644)
    blob.write_bytes(blob.read_bytes() + b"!")


@pytest.mark.parametrize("which", ["output", "action"])
def test_an_in_toto_statement_never_states_the_sha256_of_corrupt_bytes(
        cli: Cli, home: Path, tmp_path: Path, which: str) -> None:
    run = executed(cli)
    _corrupt(home, run["outputs"][0]["cid"] if which == "output" else run["memo_key"])
    key = keypair(cli, tmp_path, "k")[0]
    res = cli("receipt", run["execution_id"], "--format", "in-toto", "--sign", str(key))
    assert res.exit_code == 1 and res.stdout == "", res.output
    assert "internal error" not in res.stderr and "is corrupt in the store" in res.stderr
    res = cli("receipt", run["execution_id"], "--format", "in-toto")    # now quarantined: gone
    assert res.exit_code == 1 and res.stdout == "" and "no longer in the store" in res.stderr


def test_a_corrupt_stored_receipt_is_said_to_be_corrupt_not_removed_by_gc(cli: Cli, home: Path) -> None:
    from theoryx.store import executions
    from theoryx.store.handle import open_stores

    run = executed(cli)
    rec = executions.get(open_stores(home).db, run["execution_id"])
    assert rec.receipt_cid
    _corrupt(home, rec.receipt_cid)
    res = cli("receipt", run["execution_id"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "is corrupt in the store" in res.stderr and "gc" not in res.stderr.split("corrupt")[0]


def test_a_tilde_that_cannot_be_expanded_is_a_usage_error_not_a_crash(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = executed(cli)
    key, pub = keypair(cli, tmp_path, "k")
    signed = write(tmp_path / "s.json", cli("receipt", run["execution_id"], "--sign", str(key)).stdout_bytes)
    for args, flag in ((["receipt", run["execution_id"], "--sign", "~nosuchuser-theoryx/k"], "--sign"),
                       (["keygen", "--out", "~nosuchuser-theoryx/k"], "--out"),
                       (["verify-receipt", str(signed), "--key", "~nosuchuser-theoryx/k.pub"], "--key")):
        res = cli(*args)
        assert res.exit_code == 2, res.output
        assert "internal error" not in res.stderr and f"{flag} '~nosuchuser-theoryx/k" in res.stderr
    monkeypatch.setenv("XDG_CONFIG_HOME", "~nosuchuser-theoryx/config")   # the default key's place
    res = cli("keygen")
    assert res.exit_code == 2 and "internal error" not in res.stderr and "XDG_CONFIG_HOME" in res.stderr
    code, report = verify(cli, signed)    # no default key: the signature check says to give --key
    assert code == 1 and failed(report) == [
        "signature: the receipt is signed but there is no key to check it with: give --key PUB"]
    assert verify(cli, signed, "--key", str(pub))[0] == 0


def test_keygen_under_a_file_says_not_a_directory_not_file_exists(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile" / "k", tmp_path / "afile" / "sub" / "k"):
        res = cli("keygen", "--out", str(out))
        assert res.exit_code == 1 and res.stderr == f"Error: cannot write the key pair {out}: Not a directory\n"
    assert [p.name for p in (tmp_path / "afile").parent.iterdir() if p.name.startswith((".", "k"))] == []


def test_keygens_at_once_take_turns_one_refused_and_never_a_mismatched_pair(tmp_path: Path) -> None:
    import threading

    from theoryx.errors import UsageError
    from theoryx.provenance import keys

    def matched(path: Path) -> bool:
        return keys.keyid(keys.load_private(path).public_key()) == keys.keyid(keys.load_public(keys.public_path(path)))

    for force in (False, True):
        for trial in range(15):
            path = tmp_path / f"{force}-{trial}" / "k"
            gate, made = threading.Barrier(2), []

            def one(path: Path = path, gate: threading.Barrier = gate, made: list[str] = made,
                    force: bool = force) -> None:
                gate.wait()
                try:
                    made.append(keys.generate(path, force=force))
                except UsageError:
                    pass

            threads = [threading.Thread(target=one) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # without force: one key made, the other refused (both "succeeded" before, one
            # overwriting the other's key); with force: the pair on disk is one key's
            assert len(made) == (2 if force else 1), (force, trial, made)
            assert matched(path), (force, trial)
            assert keys.keyid(keys.load_public(keys.public_path(path))) in made
            assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".pub"]
