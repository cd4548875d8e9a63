"""Bounded log capture (issue 10, defect 1), without Docker: the capture itself, the spec's
``limits.log_bytes``, the mock adapter end to end, and theoryx's anonymous memory while a mock
processor floods stdout and writes a large output file.

A processor's stdout and stderr are scrubbed of secret values as they arrive, then only their
first and last ``log_bytes / 2`` bytes are kept (on disk), with one marker line between them;
the record says how many bytes each stream dropped (``log_truncated``).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flood_testing import MIB, flood_registry, measure
from theoryx_testing import REPO

import theoryx
from cas import Store
from theoryx.adapters.logs import MASK, SMALL_LOG, LogCapture, Scrubber, marker, store_log
from theoryx.errors import SpecError
from theoryx.spec.model import DEFAULT_LOG_BYTES, ProcessorSpec

# -- the capture --------------------------------------------------------------------------------


def captured(tmp_path: Path, chunks: list[bytes], limit: int, secrets: tuple[str, ...] = (),
             with_marker: bool = False) -> tuple[bytes, int]:
    cap = LogCapture(tmp_path / "x.log", limit, secrets, with_marker=with_marker)
    for chunk in chunks:
        cap.write(chunk)
    seen = cap.close()
    assert not (tmp_path / "x.log.tail").exists()
    return (tmp_path / "x.log").read_bytes(), seen.dropped


def cut(data: bytes, at: list[int]) -> list[bytes]:
    points = [0, *sorted(at), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def test_head_and_tail_are_kept_exactly_whatever_the_chunking(tmp_path: Path) -> None:
    rnd = random.Random(10)
    for _ in range(400):
        limit = rnd.randint(2, 300)
        data = bytes(rnd.randint(33, 126) for _ in range(rnd.randint(0, 900)))
        chunks = cut(data, [rnd.randint(0, len(data)) for _ in range(rnd.randint(0, 12))])
        kept, dropped = captured(tmp_path, chunks, limit)
        head, tail = limit // 2, limit - limit // 2
        expected = data if len(data) <= limit else data[:head] + data[len(data) - tail:]
        assert kept == expected and dropped == max(0, len(data) - limit), (limit, len(data))


def test_the_marker_says_how_much_was_dropped_and_where(tmp_path: Path) -> None:
    data = b"".join(f"line {i:05d}\n".encode() for i in range(10_000))      # 110,000 bytes
    kept, dropped = captured(tmp_path, cut(data, list(range(0, len(data), 4096))), 1000, with_marker=True)
    assert dropped == len(data) - 1000
    note = marker(dropped, "stdout", 1000)
    assert kept == data[:500] + note + data[-500:]
    assert b"109000 bytes of stdout dropped here" in note


def test_a_stream_within_the_limit_is_kept_whole_without_marker(tmp_path: Path) -> None:
    kept, dropped = captured(tmp_path, [b"hello ", b"world\n"], DEFAULT_LOG_BYTES, with_marker=True)
    assert (kept, dropped) == (b"hello world\n", 0)


@pytest.mark.parametrize("limit", [64, 10_000])
def test_a_secret_split_at_every_chunk_boundary_is_scrubbed(tmp_path: Path, limit: int) -> None:
    secret = "sk-live-0123456789"
    data = (b"x" * 37 + secret.encode() + b"y" * 29) * 4
    for at in range(1, len(data)):
        for second in (at, min(len(data), at + 3)):      # two and three chunks
            kept, _ = captured(tmp_path, cut(data, [at, second]), limit, (secret,))
            assert secret.encode() not in kept
            # no fragment of it either, even where the head/tail cut falls inside it
            assert secret[:6].encode() not in kept and secret[-6:].encode() not in kept, (at, kept)
            if limit > len(data):
                assert kept == data.replace(secret.encode(), MASK)


def test_skip_stands_for_bytes_dropped_upstream(tmp_path: Path) -> None:
    cap = LogCapture(tmp_path / "x.log", 20, ())
    cap.write(b"0123456789")          # the head
    cap.write(b"abc")                 # would start the tail, but is not contiguous with what follows
    cap.skip(1000)
    cap.write(b"KLMNOPQRST")
    seen = cap.close()
    assert seen.dropped == 1003 and seen.head == 10 and seen.size == 1023
    assert (tmp_path / "x.log").read_bytes() == b"0123456789" + marker(1003, "stdout", 20) + b"KLMNOPQRST"


def test_a_silent_stream_can_leave_no_file(tmp_path: Path) -> None:
    cap = LogCapture(tmp_path / "quiet.log", 100, (), create_empty=False)
    assert cap.close().size == 0 and not (tmp_path / "quiet.log").exists()


def test_a_capture_that_never_reached_its_tail_removes_no_ring_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing costs no filesystem call for a ring that was never created (most logs are short)."""
    removed: list[str] = []
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        removed.append(self.name)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    short = LogCapture(tmp_path / "short.log", 100, ())
    short.write(b"well within the head")
    short.close()
    long = LogCapture(tmp_path / "long.log", 10, ())
    long.write(b"x" * 50)
    long.close()
    assert removed == ["long.log.tail"] and not (tmp_path / "long.log.tail").exists()


def test_store_log_streams_and_scrubs(tmp_path: Path) -> None:
    cas = Store(tmp_path / "cas", fsync=False)
    secret = "hunter2-and-more"
    log = tmp_path / "stdout.log"
    body = (b"a" * ((1 << 20) - 3) + secret.encode()) * 3         # the secret straddles 1 MiB reads
    assert len(body) > SMALL_LOG
    log.write_bytes(body)
    cid = store_log(log, cas, [secret])
    assert cid is not None and cas.read(cid) == body.replace(secret.encode(), MASK)
    assert not log.exists() and store_log(log, cas, [secret]) is None
    assert not list(tmp_path.glob("*.scrubbed"))


@pytest.mark.parametrize("size", [0, 10, SMALL_LOG - 20, SMALL_LOG + 100])
def test_store_log_scrubs_small_logs_in_memory_and_large_ones_through_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    import builtins

    cas = Store(tmp_path / "cas", fsync=False)
    secret = "hunter2-and-more"
    log = tmp_path / "stderr.log"
    body = (b"b" * size + secret.encode() + b"\n")[-size:] if size else b""
    if size > SMALL_LOG:   # a secret across the end of the first read (SMALL_LOG + 1 bytes)
        body = b"b" * (SMALL_LOG - 5) + secret.encode() + b"c" * (size - SMALL_LOG + 5 - len(secret))
    assert len(body) == size
    log.write_bytes(body)
    written: list[str] = []
    real_open = builtins.open

    def spy(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode:
            written.append(Path(file).name)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    cid = store_log(log, cas, [secret])
    assert cid is not None and cas.read(cid) == body.replace(secret.encode(), MASK)
    assert not log.exists()
    assert written == (["stderr.log.scrubbed"] if size > SMALL_LOG else [])


def test_scrubber_flush_returns_the_held_partial_match() -> None:
    s = Scrubber(["abcdef"])
    assert s.feed(b"xxabc") == b"xx" and s.flush() == b"abc"


# -- the spec ---------------------------------------------------------------------------------


def spec_of(tmp_path: Path, limits: str) -> ProcessorSpec:
    import yaml

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    raw = yaml.safe_load(f"ref: t/x@1\nimage: {{dockerfile: Dockerfile}}\ninputs: {{type: object}}\n"
                         f"outputs: []\nlimits: {limits}\n")
    return ProcessorSpec.from_mapping(raw, tmp_path / "x@1.yaml")


def test_log_bytes_defaults_to_8_mib_and_keys_apart_only_when_set(tmp_path: Path) -> None:
    default = spec_of(tmp_path, "{}")
    assert default.limits.log_bytes == DEFAULT_LOG_BYTES == 8 << 20
    # unchanged key ingredients for every spec that does not set it
    assert default.execution_fields()["limits"] == {"max_files": 10_000, "max_bytes": 10 << 30, "max_depth": 32}
    set_ = spec_of(tmp_path, "{log_bytes: 65536}")
    assert set_.limits.log_bytes == 65536 and set_.execution_fields()["limits"]["log_bytes"] == 65536
    assert ProcessorSpec.from_cache(set_.to_cache(), set_.source).limits.log_bytes == 65536
    assert spec_of(tmp_path, f"{{log_bytes: {DEFAULT_LOG_BYTES}}}").execution_fields() == default.execution_fields()


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "'big'", "100", str(2 << 30)])
def test_log_bytes_out_of_range_is_a_spec_error(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SpecError, match=r"limits\.log_bytes"):
        spec_of(tmp_path, f"{{log_bytes: {bad}}}")


# -- the mock adapter end to end --------------------------------------------------------------


def test_mock_stdout_beyond_the_limit_is_cut_and_the_record_says_so(home: Path, tmp_path: Path) -> None:
    registry = flood_registry(tmp_path / "registry")
    total = 3 * MIB + 12_345
    res = theoryx.run("test/floodsmall@1", inputs={"stdout_bytes": total}, home=home, adapter="mock",
                      registry=str(registry))
    assert res.record.log_truncated == {"stdout": total - MIB}
    assert res.record.stdout_cid is not None and res.record.stderr_cid is None
    stored = Store(home / "cas-v1").read(res.record.stdout_cid)
    note = marker(total - MIB, "stdout", MIB)
    assert len(stored) == MIB + len(note)
    assert stored.startswith(b"block 00000000\n") and note in stored
    full = b"".join(_flood().block(n, min(MIB, total - n * MIB)) for n in range(4))
    assert stored == full[:MIB // 2] + note + full[-(MIB // 2):]
    from theoryx.store import executions
    from theoryx.store.db import open_db

    assert executions.get(open_db(home / "db-v1"), res.execution_id).log_truncated == {"stdout": total - MIB}
    small = theoryx.run("test/floodsmall@1", inputs={"stdout_bytes": 100}, home=home, adapter="mock",
                        registry=str(registry))
    assert small.record.log_truncated is None


def _flood() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("flood_for_tests", REPO / "tests/docker/processors/flood/flood.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MOCK_DRIVER = """\
import json, sys, theoryx
res = theoryx.run(sys.argv[1], inputs=json.loads(sys.argv[2]), adapter="mock", registry=sys.argv[3])
print(json.dumps({"log_truncated": res.record.log_truncated, "outputs": [[o.path, o.size] for o in res.outputs]}))
"""
ANON_BOUND = 200 * MIB


@pytest.mark.slow
def test_mock_flood_keeps_anonymous_memory_bounded(home: Path, tmp_path: Path) -> None:
    """512 MiB through ctx.stream and a 1 GiB output file, in a theoryx subprocess whose
    /proc/<pid>/status is sampled: the anonymous peak stays under the bound; the file-backed
    part (the CAS hashing the output through a memory map) is reclaimable page cache."""
    registry = flood_registry(tmp_path / "registry")
    inputs = {"stdout_bytes": 512 * MIB, "file_bytes": 1024 * MIB}
    env = {**os.environ, "THEORYX_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", MOCK_DRIVER, "test/flood@1", json.dumps(inputs), str(registry)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    peaks = measure(proc)
    print(f"mock, 512 MiB stdout + 1 GiB output: {peaks.describe()}")
    assert peaks.returncode == 0, peaks.stderr.decode()[-2000:]
    body = json.loads(peaks.stdout)
    assert body["log_truncated"] == {"stdout": 512 * MIB - DEFAULT_LOG_BYTES}
    assert body["outputs"] == [["/artifacts/outputs/big.bin", 1024 * MIB]]
    assert peaks.rss_anon < ANON_BOUND, peaks.describe()
