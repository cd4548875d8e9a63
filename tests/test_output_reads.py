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
