"""Reading a run's outputs through the Python API: ``Output.open`` as a binary stream."""

from __future__ import annotations

import array
import io
import os
from pathlib import Path

import pytest
from theoryx_testing import HELLO, REGISTRY

import theoryx
from theoryx.errors import CorruptBlobError


def _output(home: Path) -> theoryx.Output:
    with theoryx.Session(home, registry=str(REGISTRY)) as s:
        return s.run("llm/litellm@1", inputs=HELLO, adapter="mock").output("text/response.txt")


def test_open_reads_to_the_end_closes_early_and_serves_io_wrappers(home: Path) -> None:
    out = _output(home)     # read after the session closed
    whole = out.bytes()
    with out.open() as f:
        assert f.read() == whole and f.read() == b""
    with out.open() as f:
        assert f.read(3) == whole[:3]       # closed early: nothing raised
    assert f.closed
    with io.TextIOWrapper(out.open(), encoding="utf-8") as text:
        assert text.read() == out.text()
    with io.BufferedReader(out.open()) as buffered:     # type: ignore[arg-type]
        assert buffered.read() == whole


def test_readinto_fills_any_writable_buffer(home: Path) -> None:
    """It assigned bytes to a slice of the buffer: an array of ints raised TypeError."""
    out = _output(home)
    whole = out.bytes()
    ints = array.array("i", [0] * 4)
    with out.open() as f:
        n = f.readinto(ints)
    assert n == min(len(whole), 16) and ints.tobytes()[:n] == whole[:n]
    view = memoryview(bytearray(8))
    with out.open() as f:
        assert f.readinto(view) == 8 and bytes(view) == whole[:8]


def test_a_corrupt_output_read_to_the_end_raises_and_is_quarantined(home: Path) -> None:
    out = _output(home)
    path = out.local_path()
    os.chmod(path, 0o644)
    path.write_bytes(out.bytes()[:-1] + b"!")
    with out.open() as f:
        assert f.read(2)                    # closed early: not checked, nothing raised
    with pytest.raises(CorruptBlobError), out.open() as f:
        f.read()
    assert not path.exists()


BLOBS_OUTPUTS = "  - {path: raw.bin, mime: application/octet-stream}\n  - {path: deep.json, mime: application/json}\n"

BLOBS_MOCK = """\
def run(inputs, outdir, ctx):
    (outdir / "raw.bin").write_bytes(b"ab\\xff\\xfecd")
    (outdir / "deep.json").write_text("[" * 100000 + "]" * 100000)
    return {}
"""


def test_text_and_json_of_an_output_that_is_neither_are_output_format_errors(home: Path, tmp_path: Path) -> None:
    """Typed errors naming the output (before: a bare UnicodeDecodeError / JSONDecodeError /
    RecursionError); still ValueErrors, as before, for callers that caught those."""
    from theoryx_testing import mock_spec, write_spec

    from theoryx.errors import OutputFormatError, TheoryxError

    spec = write_spec(tmp_path / "reg", "t/blobs@1", mock_spec("t/blobs@1", BLOBS_OUTPUTS))
    (spec.parent / "blobs").mkdir()
    (spec.parent / "blobs" / "mock.py").write_text(BLOBS_MOCK)
    with theoryx.Session(home, registry=str(tmp_path / "reg")) as s:
        res = s.run("t/blobs@1", inputs={}, adapter="mock")
    raw, deep = res.output("raw.bin"), res.output("deep.json")
    with pytest.raises(OutputFormatError, match=r"raw\.bin is not utf-8 text: byte 0xff at offset 2") as info:
        raw.text()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TheoryxError)
    assert info.value.code == "ERR_OUTPUT_FORMAT"
    with pytest.raises(OutputFormatError, match=r"raw\.bin is not JSON"):
        raw.json()
    with pytest.raises(OutputFormatError, match="no text encoding is called 'klingon'"):
        raw.text("klingon")
    with pytest.raises(OutputFormatError, match="nested too deep"):
        deep.json()
    assert raw.text("latin-1") == "abÿþcd"


def test_a_second_read_of_a_blob_found_corrupt_says_it_was_quarantined(home: Path) -> None:
    """Not "removed by gc?": the first read found it corrupt and moved it to the quarantine."""
    from theoryx.errors import NotFound

    out = _output(home)
    blob = home / "cas-v1" / "blobs" / out.cid[3:5] / out.cid[5:]
    blob.chmod(0o644)
    blob.write_bytes(b"damaged")
    with pytest.raises(CorruptBlobError):
        out.bytes()
    with pytest.raises(NotFound, match="a read found it corrupt and moved it to the quarantine") as info:
        out.bytes()
    assert "removed by gc" not in info.value.message
