"""Opt-in live tests: the probe processor and ``data/textstats@1`` on Modal's service.

Run them with a real token (they create Sandboxes and a Volume, and cost a few cents)::

    MODAL_TOKEN_ID=... MODAL_TOKEN_SECRET=... .venv/bin/pytest -m modal_live tests/modal/test_modal_live.py -s

They skip, saying why, unless ``-m modal_live`` selects them and both token variables are set;
nothing else in the suite needs Modal. Blobs go to the Volume ``$THEORYX_MODAL_VOLUME``, by default
``theoryx-cas-live-tests`` here (``modal volume delete theoryx-cas-live-tests`` removes it). The
printed lines answer the questions BUILD.md leaves open (whose user runs, how a memory kill shows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modal_testing import make_registry
from theoryx_testing import REGISTRY

import theoryx
from theoryx.errors import ExecutionTimeout, OutOfMemory, ProcessorFailed, TheoryxError

pytestmark = [pytest.mark.modal_live, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _live(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if "modal_live" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("opt-in: run `pytest -m modal_live` with MODAL_TOKEN_ID/MODAL_TOKEN_SECRET set")
    if not (os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")):
        pytest.skip("MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not both set")
    monkeypatch.delenv("THEORYX_BASE_IMAGE", raising=False)      # Modal pulls python:3.11-slim itself
    if not os.environ.get("THEORYX_MODAL_VOLUME"):
        monkeypatch.setenv("THEORYX_MODAL_VOLUME", "theoryx-cas-live-tests")
    yield


def run(registry: Path, home: Path, ref: str, inputs: dict[str, Any], **kw: Any) -> theoryx.RunResult:
    return theoryx.run(ref, inputs=inputs, adapter="modal", home=home, registry=str(registry), **kw)


def test_the_probe_runs_on_modal(tmp_path: Path, home: Path) -> None:
    registry = make_registry(tmp_path / "registry")
    note = tmp_path / "note.txt"
    note.write_text("attached text\n")
    chunks: list[tuple[float, bytes]] = []
    t0 = time.monotonic()
    res = run(registry, home, "test/probe@1", {"mode": "hello", "file": {"$attach": "f"}},
              attachments={"f": str(note)}, plan="live", stream=lambda _n, c: chunks.append((time.monotonic(), c)))
    body = res.output("out.json").json()
    print(f"probe on Modal in {time.monotonic() - t0:.1f}s: uid {body['uid']} (USER honoured: {body['uid'] == 10001}), "
          f"net {body['net']}, cost ${res.record.cost_micros / 1e6:.6f}")
    assert body["file_text"] == "attached text\n" and body["write_input"] != "ok"
    assert res.output("sub/note.txt").text() == "nested\n" and chunks
    again = run(registry, home, "test/probe@1", {"mode": "hello", "file": {"$attach": "f"}},
                attachments={"f": str(note)})
    assert again.cache == "hit"


def test_textstats_runs_on_modal(tmp_path: Path, home: Path) -> None:
    csv = tmp_path / "table.csv"
    csv.write_text("name,value\na,1\nb,2\nc,3\n")
    res = run(REGISTRY, home, "data/textstats@1", {"file": {"$attach": "t"}, "format": "csv"},
              attachments={"t": str(csv)})
    stats = res.output("stats.json").json()
    print(f"textstats on Modal: {stats}")
    assert res.cache == "miss" and stats


@pytest.mark.parametrize(("ref", "inputs", "expected"), [
    ("test/probe@1", {"mode": "fail"}, ProcessorFailed),
    ("test/probe@1", {"mode": "killed"}, ProcessorFailed),
    ("test/short@1", {"mode": "sleep", "seconds": 60}, ExecutionTimeout),
    ("test/tight@1", {"mode": "oom"}, OutOfMemory),
])
def test_failures_on_modal_map_as_documented(tmp_path: Path, home: Path, ref: str, inputs: dict[str, Any],
                                            expected: type) -> None:
    registry = make_registry(tmp_path / "registry")
    with pytest.raises(TheoryxError) as info:
        run(registry, home, ref, inputs)
    print(f"{ref} {inputs['mode']}: {info.value.code}: {info.value.message}")
    assert isinstance(info.value, expected)


def test_the_open_questions_on_modal(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prints Modal's answers to what its docs leave open; whichever they are, the run is handled:
    the processor's environment is exactly the image's ENV, the contract and the secrets; an image
    without Python runs or fails with an error naming Python; the build is recorded apart."""
    from test_modal_open_questions import nopython, settle_event

    from theoryx.errors import ImageBuildError, ModalSandboxError

    registry = make_registry(tmp_path / "registry")
    monkeypatch.setenv("PROBE_SECRET", "live-secret")
    res = run(registry, home, "test/secret@1", {"mode": "environ"}, plan="live-q")
    env = res.output("out.json").json()["env"]
    print(f"the processor's environment on Modal: {sorted(env)}")
    assert not any(name.startswith("MODAL_") for name in env) and env["HOME"] == "/tmp" and "PROBE_SECRET" in env
    print(f"billing: {settle_event(home, 'live-q').get('billing')}")
    try:
        body = run(registry, home, nopython(registry), {}).output("out.json").json()
        print(f"an image without Python runs on Modal: {body}")
    except (ImageBuildError, ModalSandboxError) as exc:
        print(f"an image without Python does not run on Modal: {exc.code}: {exc.message}")
        assert "Python" in exc.message or "python" in exc.message
