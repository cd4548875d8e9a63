"""Declared outputs that no run could produce are ``ERR_SPEC`` naming the file and the field, in
``registry validate`` and ``run`` alike: a name ingest refuses (a backslash, a control
character), the same path twice, or a path that another makes a directory (``a`` and
``a/b.txt``). They passed ``registry validate``; then every run failed (``ERR_OUTPUT_REJECTED``,
``ERR_OUTPUT_MISSING``, a mock failing to write its placeholders) or, for a path declared twice,
succeeded with one of two mime types."""

from __future__ import annotations

from pathlib import Path

import pytest
from theoryx_testing import Cli, mock_spec, write_spec

from theoryx.errors import SpecError
from theoryx.spec.registry import load_file


def write(root: Path, outputs: str) -> Path:
    return write_spec(root, "t/outs@1", mock_spec("t/outs@1", outputs))


@pytest.mark.parametrize("outputs, field, words", [
    ("  - {path: 'a\\\\b.txt', mime: text/plain}\n", "outputs[0].path", "backslash"),
    ('  - {path: "a\\tb.txt", mime: text/plain}\n', "outputs[0].path", "control character"),
    ("  - {path: a.txt, mime: text/plain}\n  - {path: a.txt, mime: application/json}\n",
     "outputs[1].path", "already declared by outputs[0]"),
    ("  - {path: a, mime: text/plain}\n  - {path: a/b.txt, mime: text/plain}\n",
     "outputs[1].path", "one would be a directory of the other"),
    ("  - {path: a/b/c.txt, mime: text/plain}\n  - {path: a/b, mime: text/plain}\n",
     "outputs[1].path", "one would be a directory of the other"),
], ids=["backslash", "tab", "twice", "file-then-below", "below-then-file"])
def test_an_output_no_run_could_produce_is_a_spec_error(home: Path, tmp_path: Path, outputs: str, field: str,
                                                         words: str) -> None:
    path = write(tmp_path / "reg", outputs)
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert str(path) in info.value.message and f"field '{field}'" in info.value.message, info.value.message
    assert words in info.value.message
    cli = Cli(home, tmp_path / "reg")
    out = cli("registry", "validate")
    assert out.exit_code == 1 and f"field '{field}'" in out.stdout, out.stdout
    assert cli.run_json("--adapter", "mock", "--ref", "t/outs@1")["error"]["code"] == "ERR_SPEC"


def test_siblings_and_shared_prefixes_are_fine(home: Path, tmp_path: Path) -> None:
    write(tmp_path / "reg", "  - {path: a/b.txt, mime: text/plain}\n  - {path: a/bc.txt, mime: text/plain}\n"
                            "  - {path: ab, mime: text/plain}\n")
    cli = Cli(home, tmp_path / "reg")
    assert cli("registry", "validate").exit_code == 0
    assert cli.run_json("--adapter", "mock", "--ref", "t/outs@1")["status"] == "success"
