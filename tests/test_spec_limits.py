"""Spec files are bounded before they are parsed (issue 10, defect 6): no anchors or aliases (the
YAML alias bomb), at most 1 MiB, 64 levels of nesting and 20,000 nodes, each refusal an
``ERR_SPEC`` naming the file and the field; a normal spec still loads and is cached."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from theoryx_testing import REGISTRY, REPO, subprocess_env

from theoryx.errors import SpecError
from theoryx.spec import registry as registry_mod
from theoryx.spec.refs import Ref
from theoryx.spec.registry import SPEC_MAX_BYTES, Registry, load_file, parse

SPEC = """\
ref: t/echo@1
description: {description}
image:
  ref: example.invalid/echo@sha256:{digest}
runtime: {{cpu: 1, memory: 128, timeout: 10}}
outputs:
  - {{path: out.txt, mime: text/plain}}
inputs:
  type: object
  properties:
{properties}
"""


def spec_text(properties: str = "    s: {type: string}", description: str = "test") -> str:
    return SPEC.format(description=description, digest="0" * 64, properties=properties)


def bomb(levels: int = 9) -> str:
    """The classic "billion laughs": nine levels of nine aliases, 9**8 leaves once expanded."""
    lines = ["    a0: &a0 {type: string, description: lol}"]
    for i in range(1, levels):
        lines.append(f"    a{i}: &a{i} {{anyOf: [{', '.join([f'*a{i - 1}'] * 9)}]}}")
    return spec_text("\n".join(lines))


def write(root: Path, text: str) -> Path:
    path = root / "processors" / "t" / "echo@1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# A fresh interpreter per attempt, so that its peak resident set is this attempt's alone; the data
# segment is capped at 2 GiB so that an unbounded parse fails instead of taking the machine.
PROBE = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_DATA, (2 << 30, 2 << 30))
import theoryx
from theoryx.errors import TheoryxError
home, registry, what = sys.argv[1:]
t0 = time.monotonic()
try:
    if what == "validate":
        from theoryx.spec.registry import load_file
        from pathlib import Path
        load_file(Path(registry) / "processors" / "t" / "echo@1.yaml")
    else:
        theoryx.run("t/echo@1", inputs={}, adapter="mock", home=home, registry=registry)
    outcome = {"ok": True}
except TheoryxError as exc:
    outcome = {"ok": False, "code": exc.code, "message": exc.message}
except MemoryError:
    outcome = {"ok": False, "code": "MemoryError", "message": ""}
outcome["seconds"] = time.monotonic() - t0
# VmHWM is this process image's own peak; ru_maxrss would carry over the peak of the forking
# parent (a large pytest process) across exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
outcome["peak_mib"] = int(hwm.split()[1]) / 1024
print(json.dumps(outcome))
"""


def probe(home: Path, registry: Path, what: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(home), str(registry), what],
                          env=subprocess_env(home), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    body: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return body


@pytest.mark.parametrize("what", ["validate", "run"])
def test_the_alias_bomb_is_refused_fast_with_bounded_memory(home: Path, tmp_path: Path, what: str) -> None:
    path = write(tmp_path / "reg", bomb())
    out = probe(home, tmp_path / "reg", what)
    print(f"alias bomb via {what}: {out}")
    assert out["code"] == "ERR_SPEC", out
    message = str(out["message"])
    assert str(path) in message and "field 'inputs.properties.a0'" in message and "anchor '&a0'" in message
    assert float(str(out["seconds"])) < 5, f"took {out['seconds']} s"
    assert float(str(out["peak_mib"])) < 150, f"peak resident set {out['peak_mib']} MiB"


def test_aliases_are_refused_where_they_are_used_naming_the_field(tmp_path: Path) -> None:
    text = spec_text("    s: {type: string}\n    t: {anyOf: [{type: integer}, *s]}")
    with pytest.raises(SpecError) as info:
        load_file(write(tmp_path, text))
    assert "field 'inputs.properties.t.anyOf[1]'" in info.value.message
    assert "alias '*s'" in info.value.message and "(line 12)" in info.value.message


def test_a_file_over_one_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, spec_text(description="x" * SPEC_MAX_BYTES))
    t0 = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_file(path)
    took = time.monotonic() - t0
    print(f"{path.stat().st_size:,}-byte spec refused in {took * 1000:.1f} ms")
    assert str(path) in info.value.message and "larger than 1,048,576 bytes" in info.value.message
    assert took < 1
    with pytest.raises(SpecError, match="larger than"):
        parse(path.read_bytes(), path)            # `registry ls` parses bytes it read itself


def test_a_file_just_under_the_cap_still_loads(tmp_path: Path) -> None:
    text = spec_text()
    path = write(tmp_path, spec_text(description="x" * (SPEC_MAX_BYTES - len(text) - 10)))
    assert path.stat().st_size <= SPEC_MAX_BYTES
    assert len(load_file(path).description) > SPEC_MAX_BYTES - 1000


def test_nesting_deeper_than_64_levels_is_refused_naming_the_field(tmp_path: Path) -> None:
    deep = "    d: " + "{a: " * 70 + "1" + "}" * 70
    with pytest.raises(SpecError) as info:
        load_file(write(tmp_path, spec_text(deep)))
    assert "nested more than 64 levels deep" in info.value.message
    assert "field 'inputs.properties.d.a.a." in info.value.message
    keys = "? " * 200 + "x\n"                            # nesting through complex keys counts too
    with pytest.raises(SpecError, match="nested more than 64"):
        parse(keys.encode(), tmp_path / "keys.yaml")
    brackets = "x: " + "[" * 5000 + "]" * 5000           # no RecursionError either
    with pytest.raises(SpecError, match="nested more than 64"):
        parse(brackets.encode(), tmp_path / "brackets.yaml")


def test_more_than_20000_nodes_are_refused_quickly(tmp_path: Path) -> None:
    many = "    e: {enum: [" + ",".join(["0"] * 400_000) + "]}"
    path = write(tmp_path, spec_text(many))
    assert path.stat().st_size <= SPEC_MAX_BYTES
    t0 = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_file(path)
    print(f"{path.stat().st_size:,}-byte spec of 400,000 nodes refused in {time.monotonic() - t0:.2f} s")
    assert "more than 20,000 YAML nodes" in info.value.message
    assert "field 'inputs.properties.e.enum[" in info.value.message


def test_a_normal_spec_loads_and_is_served_from_the_spec_cache(tmp_path: Path) -> None:
    from theoryx.store.db import open_db

    db = open_db(tmp_path / "db")
    path = write(tmp_path / "reg", spec_text())
    first = load_file(path, db)
    assert first.inputs_schema["properties"] == {"s": {"type": "string"}}
    orig = registry_mod.parse

    def no_parse(*_: object) -> None:
        raise AssertionError("YAML parsed on a cached load")

    registry_mod.parse = no_parse  # type: ignore[assignment]
    try:
        assert load_file(path, db) == first
    finally:
        registry_mod.parse = orig
    for ref, _ in Registry((REGISTRY,)).refs():            # every shipped spec still loads
        Registry((REGISTRY,)).load(ref)
    assert Registry((REGISTRY,)).load(Ref.parse("llm/litellm@1")).ref == Ref.parse("llm/litellm@1")
