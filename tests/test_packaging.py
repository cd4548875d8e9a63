"""A non-editable install carries the registry and runs the shipped processor."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from theoryx_testing import REPO


@pytest.mark.slow
def test_wheel_ships_the_registry_and_entry_point(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("theoryx-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("theoryx/_registry/processors/llm/litellm@1.yaml",
                     "theoryx/_registry/processors/llm/litellm/mock.py",
                     "theoryx/_registry/processors/llm/litellm/Dockerfile",
                     "theoryx/_registry/processors/data/textstats@1.yaml",
                     "theoryx/_registry/processors/data/textstats/run.py",
                     "cas/store.py", "theoryx/cli/main.py"):
        assert required in names, required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "theoryx = theoryx.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()
