"""The modal adapter bounds logs too (issue 10, defect 1): the runner keeps only the head and tail
of ``limits.log_bytes`` in the container (secret values scrubbed before the cut) and says where
it cut, so the response never carries a whole log; the host redoes the cut with its marker and
records what was dropped. Streamed logs are forwarded whole and bounded on the host."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from modal_testing import SPEC, FakeModal, StreamingFakeModal

import theoryx
from cas import Store
from theoryx.adapters.logs import MASK, marker

SECRET = "modal-secret-value-42"
LIMIT = 4096
CHATTY = """\
import os, sys
secret = os.environ.get("PROBE_SECRET", "").encode()
out = sys.stdout.buffer
for i in range(5000):
    out.write(b"line %06d " % i + secret + b"\\n")
    if i % 100 == 0:
        out.flush()
out.flush()
sys.stderr.buffer.write(b"e" * 10000)
"""


def expected_stdout() -> bytes:
    return b"".join(b"line %06d " % i + MASK + b"\n" for i in range(5000))


@pytest.fixture
def chatty(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = registry / "processors" / "test" / "probe"
    (folder / "chatty.py").write_text(CHATTY)
    command = f'["{sys.executable}", "{folder / "chatty.py"}"]'
    extra = f"limits: {{log_bytes: {LIMIT}}}\nsecrets: [PROBE_SECRET]\n"
    (registry / "processors" / "test" / "chatty@1.yaml").write_text(
        SPEC.format(name="chatty", command=command, gpu="null", extra=extra))
    monkeypatch.setenv("PROBE_SECRET", SECRET)
    return registry


def check_stored(home: Path, res: theoryx.RunResult) -> None:
    scrubbed = expected_stdout()
    dropped = {"stdout": len(scrubbed) - LIMIT, "stderr": 10000 - LIMIT}
    assert res.record.log_truncated == dropped
    cas = Store(home / "cas-v1")
    stdout = cas.read(res.record.stdout_cid or "")
    assert stdout == scrubbed[:LIMIT // 2] + marker(dropped["stdout"], "stdout", LIMIT) + scrubbed[-LIMIT // 2:]
    assert SECRET.encode() not in stdout
    stderr = cas.read(res.record.stderr_cid or "")
    assert stderr == b"e" * (LIMIT // 2) + marker(dropped["stderr"], "stderr", LIMIT) + b"e" * (LIMIT // 2)


def test_the_runner_sends_only_the_bounded_logs(chatty: Path, home: Path, fake: FakeModal) -> None:
    res = theoryx.run("test/chatty@1", inputs={}, home=home, registry=str(chatty), adapter="modal")
    response = fake.responses[0]
    scrubbed = expected_stdout()
    print(f"processor wrote {len(scrubbed)} bytes to stdout; the response carried {len(response['stdout'])}")
    assert response["stdout"] == scrubbed[:LIMIT // 2] + scrubbed[-LIMIT // 2:]     # scrubbed before the cut
    assert response["log_cuts"] == {"stdout": [LIMIT // 2, len(scrubbed) - LIMIT],
                                    "stderr": [LIMIT // 2, 10000 - LIMIT]}
    check_stored(home, res)


def test_streamed_logs_are_forwarded_whole_and_stored_bounded(chatty: Path, home: Path,
                                                               streaming_fake: StreamingFakeModal) -> None:
    seen: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    res = theoryx.run("test/chatty@1", inputs={}, home=home, registry=str(chatty), adapter="modal",
                      stream=lambda name, data: seen[name].append(data))
    assert b"".join(seen["stdout"]) == expected_stdout() and b"".join(seen["stderr"]) == b"e" * 10000
    assert streaming_fake.responses[0]["stdout"] is None
    check_stored(home, res)
