"""``theoryx explain``: each kind of memo key ingredient is named exactly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from theoryx_testing import HELLO, REGISTRY, Cli

import theoryx

Edit = Callable[[Path, Path], dict[str, Any]]


def run(home: Path, registry: Path, **kw: Any) -> theoryx.RunResult:
    kw.setdefault("inputs", HELLO)
    return theoryx.run(kw.pop("ref", "llm/litellm@1"), adapter="mock", home=home, registry=str(registry), **kw)


def changes(cli: Cli, a: str, b: str) -> list[tuple[str, str]]:
    res = cli("explain", "--json", a, b)
    assert res.exit_code == 0, res.output
    return [(c["kind"], c["where"]) for c in json.loads(res.stdout)["changes"]]


def _spec_timeout(registry: Path, _: Path) -> dict[str, Any]:
    spec = registry / "processors" / "llm" / "litellm@1.yaml"
    spec.write_text(spec.read_text().replace("timeout: 300", "timeout: 299"))
    return {}


def _spec_schema(registry: Path, _: Path) -> dict[str, Any]:
    spec = registry / "processors" / "llm" / "litellm@1.yaml"
    spec.write_text(spec.read_text().replace("max_tokens: {type: integer, minimum: 1}",
                                             "max_tokens: {type: integer, minimum: 2}"))
    return {}


def _context_file(registry: Path, _: Path) -> dict[str, Any]:
    mock = registry / "processors" / "llm" / "litellm" / "mock.py"
    mock.write_text(mock.read_text() + "\n# edited\n")
    return {}


CASES: list[tuple[str, Edit, list[tuple[str, str]]]] = [
    ("spec field", _spec_timeout, [("spec", "runtime.timeout")]),
    ("spec schema field", _spec_schema, [("spec", "inputs.properties.max_tokens.minimum")]),
    ("context file", _context_file, [("context", "mock.py")]),
    ("input pointer", lambda r, t: {"inputs": {"messages": [{"role": "user", "content": "Hello!"}]}},
     [("input", "/messages/0/content")]),
    ("added input", lambda r, t: {"inputs": {**HELLO, "temperature": 0.5}}, [("input", "/temperature")]),
    ("seed", lambda r, t: {"seed": 7}, [("seed", "seed")]),
    ("write prefix", lambda r, t: {"write_prefix": "/artifacts/other/"}, [("write_prefix", "write_prefix")]),
    ("salt", lambda r, t: {"salt": "poisoned-2026-11"}, [("salt", "salt")]),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explain_names_exactly_the_changed_ingredient(
    cli: Cli, home: Path, registry: Path, tmp_path: Path, edit: Edit, expected: list[tuple[str, str]]
) -> None:
    base = run(home, registry)
    changed = run(home, registry, **edit(registry, tmp_path))
    assert changed.memo_key != base.memo_key
    assert changes(cli, base.execution_id, changed.execution_id) == expected


def test_explain_names_the_attachment_pointer_and_file(cli: Cli, home: Path, registry: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "data.txt").write_text("one two\n")
    (tmp_path / "y" / "data.txt").write_text("one three\n")
    inputs = {"file": {"$attach": "f"}}
    a = run(home, registry, ref="data/textstats@1", inputs=inputs, attachments={"f": tmp_path / "x" / "data.txt"})
    b = run(home, registry, ref="data/textstats@1", inputs=inputs, attachments={"f": tmp_path / "y" / "data.txt"})
    res = cli("explain", "--json", a.execution_id, b.execution_id)
    [change] = json.loads(res.stdout)["changes"]
    assert (change["kind"], change["where"]) == ("attachment", "/file")
    assert change["old"]["cid"] != change["new"]["cid"]
    human = cli("explain", a.execution_id, b.execution_id).stdout
    assert "attachment /file: data.txt b3:" in human and "8 bytes -> data.txt b3:" in human


def test_identical_keys_say_so(cli: Cli, home: Path, registry: Path) -> None:
    a = run(home, registry)
    b = run(home, registry, inputs={"messages": HELLO["messages"]})
    assert b.cache == "hit"
    res = cli("explain", a.execution_id, b.execution_id)
    assert res.exit_code == 0 and "Identical memo keys" in res.stdout
    body = json.loads(cli("explain", "--json", a.execution_id, b.execution_id).stdout)
    assert body["identical"] is True and body["changes"] == []


def test_memo_keys_resolve_through_the_action_cache(cli: Cli, home: Path, registry: Path) -> None:
    a = run(home, registry)
    b = run(home, registry, seed=3)
    assert changes(cli, a.memo_key, b.memo_key) == [("seed", "seed")]
    assert changes(cli, a.memo_key, b.execution_id) == [("seed", "seed")]
    human = cli("explain", a.memo_key, b.memo_key).stdout
    assert f"A: {a.memo_key}" in human and "seed: 0 -> 3" in human


def test_several_changes_are_listed_in_ingredient_order(cli: Cli, home: Path, registry: Path) -> None:
    a = run(home, registry)
    b = run(home, registry, seed=2, salt="s", write_prefix="/artifacts/w/",
            inputs={"messages": [{"role": "user", "content": "Hi"}]})
    assert changes(cli, a.execution_id, b.execution_id) == [
        ("salt", "salt"), ("input", "/messages/0/content"), ("write_prefix", "write_prefix"), ("seed", "seed")]


def test_unknown_targets_are_not_found(cli: Cli, home: Path, registry: Path) -> None:
    a = run(home, registry)
    res = cli("explain", a.execution_id, "b3:" + "0" * 64)
    assert res.exit_code == 1 and "not in the store" in res.stderr
    assert cli("explain", a.execution_id, "nonexistent00").exit_code == 1


def test_environment_class_and_image_kind_are_named() -> None:
    """A mock and a container action of the same processor (no Docker needed to build both)."""
    from theoryx.pipeline.action import build
    from theoryx.provenance.explain import diff_actions
    from theoryx.spec.context import env_identity, image_identity
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry((REGISTRY,)).load(Ref.parse("llm/litellm@1"))
    bodies = []
    for cls in ("mock", "container"):
        image, _ = image_identity(spec, cls)
        bodies.append(build(spec, image=image, env=env_identity(cls), inputs=HELLO,
                            write_prefix="/artifacts/outputs/", seed=0).body)
    found = {(c.kind, c.where) for c in diff_actions(bodies[0], bodies[1], lambda cid: None)}
    assert {("env", "class"), ("env", "platform"), ("image", "kind")} <= found
    assert not any(k in ("spec", "input", "seed", "salt") for k, _ in found)


def test_context_manifest_diff_names_added_removed_and_changed_files() -> None:
    from theoryx.provenance.explain import diff_actions

    def body(ctx: str) -> dict[str, Any]:
        return {"v": 1, "image": {"kind": "mock", "context": ctx}, "env": {"class": "mock"}}

    old = {"a.py": {"cid": "b3:" + "1" * 64, "size": 1, "exec": False},
           "b.py": {"cid": "b3:" + "2" * 64, "size": 2, "exec": False}}
    new = {"a.py": {"cid": "b3:" + "1" * 64, "size": 1, "exec": True},
           "c.py": {"cid": "b3:" + "3" * 64, "size": 3, "exec": False}}
    manifests = {"old": old, "new": new}
    found = diff_actions(body("old"), body("new"), manifests.get)
    assert [(c.kind, c.where, c.note) for c in found] == [
        ("context", "a.py", ""), ("context", "b.py", "removed"), ("context", "c.py", "added")]
    assert "executable" in found[0].describe()
    unknown = diff_actions(body("old"), body("gone"), manifests.get)
    assert [(c.kind, c.where) for c in unknown] == [("context", "(build context)")]


def test_a_cid_naming_another_blob_is_no_action_not_a_crash(cli: Cli, home: Path, registry: Path) -> None:
    a = run(home, registry)
    text, meta = (o.cid for o in sorted(a.outputs, key=lambda o: o.mime != "text/plain"))
    for other in (text, meta, a.record.manifest_cid):    # plain text, JSON of an object, the output manifest
        res = cli("explain", a.execution_id, other)
        assert res.exit_code == 1, res.output
        assert "internal error" not in res.stderr and f"{other} names no action" in res.stderr
        assert res.stdout == ""


def test_a_corrupt_pre_image_is_err_corrupt_blob_not_a_crash(cli: Cli, home: Path, registry: Path) -> None:
    from theoryx.store.handle import open_stores

    a, b = run(home, registry), run(home, registry, seed=3)
    blob = open_stores(home).cas.path(a.memo_key)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b" ")
    res = cli("explain", "--json", b.execution_id, a.execution_id)
    assert res.exit_code == 1, res.output
    assert "internal error" not in res.stderr and "is corrupt in the store" in res.stderr
    assert f"the action pre-image {a.memo_key} of {a.execution_id}" in res.stderr
