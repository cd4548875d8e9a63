"""Every ``$ref`` of a spec's inputs schema must resolve within the schema: one pointing nowhere
(a typo in ``#/$defs/...``, or a URL, which is never fetched) is ``ERR_SPEC`` naming the file and
the field, in ``registry validate`` and in ``run`` alike. It passed ``registry validate`` and then
failed every run as ``ERR_INTERNAL`` (``PointerToNowhere``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from theoryx_testing import Cli, write_spec

from theoryx.errors import SpecError
from theoryx.spec.registry import load_file

SPEC = f"""\
ref: t/refs@1
image:
  ref: example.invalid/refs@sha256:{"0" * 64}
outputs:
  - {{path: out.txt, mime: text/plain}}
inputs:
  type: object
  $defs:
    word: {{type: string}}
  properties:
"""


def write(root: Path, properties: str) -> Path:
    return write_spec(root, "t/refs@1", SPEC + properties)


@pytest.mark.parametrize("properties, field", [
    ("    a: {$ref: '#/$defs/wrod'}\n", "inputs.properties.a.$ref"),
    ("    b: {prefixItems: [{$ref: '#/nowhere'}]}\n", "inputs.properties.b.prefixItems[0].$ref"),
    ("    c: {$ref: 'https://example.invalid/schema.json'}\n", "inputs.properties.c.$ref"),
], ids=["typo", "in-a-list", "url"])
def test_a_ref_pointing_nowhere_is_a_spec_error_naming_the_field(
        home: Path, tmp_path: Path, properties: str, field: str) -> None:
    path = write(tmp_path / "reg", properties)
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in info.value.message and f"field '{field}'" in info.value.message, info.value.message
    cli = Cli(home, tmp_path / "reg")
    out = cli("registry", "validate")
    assert out.exit_code == 1 and f"field '{field}'" in out.stdout, out.stdout
    body = cli.run_json("--adapter", "mock", "--ref", "t/refs@1", "--inputs-json", '{"a": "x"}')
    assert body["error"]["code"] == "ERR_SPEC", body


def test_refs_that_resolve_are_accepted_and_checked(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "reg", "    a: {$ref: '#/$defs/word'}\n"
                            "    d: {$id: 'https://example.invalid/d', $defs: {n: {type: integer}}, "
                            "properties: {k: {$ref: '#/$defs/n'}}}\n"
                            "    e: {const: {$ref: '#/not/a/schema'}}\n")
    cli = Cli(home, tmp_path / "reg")
    assert cli("registry", "validate").exit_code == 0
    body = cli.run_json("--adapter", "mock", "--ref", "t/refs@1", "--inputs-json", '{"a": 1}')
    assert body["error"]["code"] == "ERR_INPUTS", body
    assert cli.run_json("--adapter", "mock", "--ref", "t/refs@1", "--inputs-json", '{"a": "x"}')["status"] == "success"


def test_an_invalid_schema_is_named_by_its_dotted_field(tmp_path: Path) -> None:
    """The field was 'inputs.properties/a/allOf/0/minLength': dots, then slashes."""
    path = write(tmp_path / "reg", "    a: {allOf: [{minLength: -1}]}\n")
    with pytest.raises(SpecError, match=r"field 'inputs\.properties\.a\.allOf\[0\]\.minLength': not a valid"):
        load_file(path)
