"""The local adapter's progress (an image build) is a notice: a log record for a Python caller,
the same raw line on stderr for the CLI, and never a byte on stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from notices_testing import captured_notices, texts
from theoryx_testing import Cli

import theoryx

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUILDING = re.compile(r"theoryx: building image \S+ for test/probe@1 \(cached by its build context\)")


def test_image_build_progress_is_a_log_record_for_python_and_a_stderr_line_for_the_cli(
        registry: Path, home: Path) -> None:
    with captured_notices() as seen:
        theoryx.run("test/probe@1", inputs={"mode": "hello", "n": 1}, adapter="local", build=True,
                    home=home, registry=str(registry))
    progress = texts(seen, "progress")
    assert len(progress) == 1 and BUILDING.fullmatch(progress[0]), progress

    res = Cli(home, registry)("run", "--json", "--adapter", "local", "--build", "--ref", "test/probe@1",
                              "--inputs-json", json.dumps({"mode": "hello", "n": 2}))
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "success"     # stdout is exactly the JSON object
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and BUILDING.fullmatch(lines[0]), res.stderr
