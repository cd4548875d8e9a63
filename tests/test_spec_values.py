"""Every value of a spec has a canonical JSON form, or the spec is ``ERR_SPEC`` naming the file and
the field, in ``registry validate`` and in ``run`` alike. Before, such specs passed validation
and then failed every run: ``ERR_INTERNAL`` (msgpack could not write an integer over 2**64 to the
spec cache; a YAML date reached the canonical encoder; an integer key was cached, then refused
when read back, on every later run) or ``ERR_INPUTS`` blaming the inputs for the spec's
``runtime.memory: 2**53+1``, ``cost.usd: .inf`` or ``!!binary`` schema value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from theoryx_testing import Cli

from theoryx.errors import SpecError
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.registry import SPEC_CACHE_VERSION, load_file, parse

SPEC = """\
ref: t/echo@1
image:
  ref: example.invalid/echo@sha256:{digest}
outputs:
  - {{path: out.txt, mime: text/plain}}
{extra}
"""
INPUTS = "inputs: {type: object}"

# (what the spec says, the field the error must name, words of the message)
BAD = [
    ("limits: {max_files: 100000000000000000000000}", "limits.max_files", "at most 9007199254740991"),
    ("runtime: {memory: 9007199254740993}", "runtime.memory", "at most 9007199254740991"),
    ("runtime: {cpu: .nan}", "runtime.cpu", "finite"),
    ("runtime: {cpu: .inf}", "runtime.cpu", "finite"),
    # below the engine's minimums: every local run failed as ERR_ADAPTER, or (1e-10 is 0 nano-CPUs) ran
    # with no CPU limit at all
    ("runtime: {memory: 4}", "runtime.memory", "at least 6 MiB"),
    ("runtime: {cpu: 0.001}", "runtime.cpu", "at least 0.01"),
    ("runtime: {cpu: 1.0e-10}", "runtime.cpu", "at least 0.01"),
    # no process can be given a NUL: every local run failed (ERR_ADAPTER, or exec's "invalid argument")
    ('command: [python3, "a\\0b"]', "command[1]", "NUL"),
    ('env: {FOO: "a\\0b"}', "env.FOO", "NUL"),
    ("cost: {usd: .inf}", "cost.usd", "finite"),
    ("cost: {usd: .nan}", "cost.usd", "finite"),
    ("cost: {per_second_usd: 100000000000000000000000}", "cost.per_second_usd", "at most"),
    ("inputs: {type: object, properties: {n: {type: integer, maximum: 100000000000000000000000}}}",
     "inputs.properties.n.maximum", "at most 9007199254740991"),
    ("inputs: {type: object, properties: {n: {type: number, maximum: .inf}}}", "inputs.properties.n.maximum",
     "finite"),
    ("inputs: {type: object, default: 2024-01-01}", "inputs.default", "a date is not a JSON value"),
    ("inputs: {type: object, default: 2024-01-01 10:00:00}", "inputs.default", "a date and time"),
    ("inputs: {type: object, properties: {1: {type: string}}}", "inputs.properties.1", "must be a string"),
    ("inputs: {type: object, properties: {s: {const: !!binary aGVsbG8=}}}", "inputs.properties.s.const",
     "binary data"),
    ("inputs: {type: object, properties: {s: {enum: !!set {a, b}}}}", "inputs.properties.s.enum", "a set"),
    ('description: "\\ud800"', "description", "lone surrogate"),
    ('env: {NAME: "\\udfff"}', "env.NAME", "lone surrogate"),
]


def text(extra: str) -> str:
    if not extra.startswith("inputs:"):
        extra += "\n" + INPUTS
    return SPEC.format(digest="0" * 64, extra=extra)


def write(root: Path, body: str) -> Path:
    path = root / "processors" / "t" / "echo@1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


@pytest.mark.parametrize("extra, field, words", BAD, ids=[b[1] + ":" + b[2][:12] for b in BAD])
def test_a_value_without_a_canonical_form_is_a_spec_error_naming_the_field(
        tmp_path: Path, extra: str, field: str, words: str) -> None:
    path = write(tmp_path, text(extra))
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in info.value.message and f"field '{field}'" in info.value.message, info.value.message
    assert words in info.value.message, info.value.message


@pytest.mark.parametrize("extra, field, words", BAD[::3], ids=[b[1] for b in BAD[::3]])
def test_validate_and_every_run_say_err_spec(home: Path, tmp_path: Path, extra: str, field: str,
                                             words: str) -> None:
    write(tmp_path / "reg", text(extra))
    cli = Cli(home, tmp_path / "reg")
    out = cli("registry", "validate")
    assert out.exit_code == 1 and f"INVALID  t/echo@1: {tmp_path}" in out.stdout and f"field '{field}'" in out.stdout
    for _ in range(2):      # the second run reads the spec cache, if anything was cached
        body = cli.run_json("--adapter", "mock", "--ref", "t/echo@1", "--inputs-json", "{}")
        assert body["error"]["code"] == "ERR_SPEC", body
        assert f"field '{field}'" in body["error"]["message"]
    out = cli("registry", "show", "t/echo@1")
    assert out.exit_code != 0 and "internal error" not in out.output and f"field '{field}'" in out.output


@pytest.mark.parametrize("scalar, words", [
    ("1" * 5000, "at most 2**53-1"),          # Python refuses to convert over 4,300 digits
    ("2024-13-45", "month must be in 1..12"),  # YAML reads it as a date, which cannot exist
])
def test_a_scalar_python_cannot_build_names_the_line(tmp_path: Path, scalar: str, words: str) -> None:
    path = write(tmp_path, text(f"limits: {{max_files: {scalar}}}"))
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in info.value.message and "(line 6)" in info.value.message
    assert words in info.value.message and len(info.value.message) < 300


def test_values_at_the_bounds_still_load_and_encode() -> None:
    from theoryx.core.canonical import canonical_bytes

    raw = {"ref": "t/x@1", "image": {"ref": "example.invalid/x@sha256:" + "0" * 64},
           "outputs": [{"path": "o.txt", "mime": "text/plain"}],
           "limits": {"max_bytes": 2**53 - 1}, "cost": {"usd": 0, "per_second_usd": 1e-9},
           "inputs": {"type": "object", "properties": {"n": {"type": "integer", "minimum": -(2**53 - 1),
                                                             "maximum": 2**53 - 1, "default": 1.5}},
                      "description": "é ✓ 😀"}}
    spec = ProcessorSpec.from_mapping(raw, Path("x@1.yaml"))
    assert spec.limits.max_bytes == 2**53 - 1
    canonical_bytes(spec.execution_fields())


def test_spec_cache_entries_of_earlier_versions_are_not_served(tmp_path: Path) -> None:
    """An entry cached before these checks (an integer key, which msgpack cannot read back under
    strict_map_key) is never read: the cache key's version changed."""
    import blake3

    from theoryx.store.db import open_db

    assert SPEC_CACHE_VERSION >= "3"
    db = open_db(tmp_path / "db")
    path = write(tmp_path / "reg", text(INPUTS))
    data = path.read_bytes()
    poisoned = parse(data, path).to_cache()
    poisoned["description"] = "served from an old entry"
    db.put("specs", f"2:{blake3.blake3(data).hexdigest()}:{path.resolve()}", poisoned)
    assert load_file(path, db).description == ""
    assert json.dumps(load_file(path, db).to_cache())    # now cached under the current version and read back
