"""The processors' Dockerfiles: built offline on the local base image and run the way the
``local`` adapter runs them (read-only root, tmpfs /tmp, non-root, no capabilities, no network,
HOME unwritable), with the contract's container paths.

Marked ``docker``: tests/conftest.py provides the engine (skip, or fail under
``THEORYX_REQUIRE_DOCKER=1``) and the base image (``$THEORYX_BASE_IMAGE``, built when missing).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.contract import load_script

PROCESSORS = Path(__file__).resolve().parents[2] / "registry" / "processors"
FAKE_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "openai_server.py"
SANDBOX = ["--rm", "--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777", "--user", "10001:10001",
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "256",
           "--memory", "1g", "--network", "none", "-e", "HOME=/nonexistent"]
pytestmark = pytest.mark.docker


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def build(base_image: str) -> Iterator[Any]:
    """``build(context) -> tag``: docker build without network; the images are removed after."""
    tags: list[str] = []

    def _build(context: Path) -> str:
        tag = f"theoryx-test/processor:{uuid.uuid4().hex[:12]}"
        done = _docker("build", "--network", "none", "-q", "--build-arg", f"BASE_IMAGE={base_image}",
                       "-t", tag, str(context))
        assert done.returncode == 0, done.stderr
        tags.append(tag)
        return tag

    yield _build
    for tag in tags:
        _docker("rmi", "-f", tag)


class Workspace:
    """Host directories mounted at the contract's container paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs, self.outputs, self.result = root / "inputs", root / "outputs", root / "result"
        for d in (self.inputs, self.outputs, self.result):
            d.mkdir(parents=True)
        for d in (self.outputs, self.result):
            d.chmod(0o777)     # written by uid 10001

    def attach(self, name: str, data: bytes, mime: str) -> dict[str, Any]:
        cid = "b3:" + "ab" * 32
        folder = self.inputs / cid
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(data)
        return {"$artifact": f"/artifacts/inputs/{cid}/{name}", "cid": cid, "mime": mime,
                "size": len(data)}

    def mounts(self, inputs: dict[str, Any]) -> list[str]:
        (self.root / "inputs.json").write_text(json.dumps(inputs))
        for p in [self.inputs, *self.inputs.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (self.root / "inputs.json").chmod(0o644)
        return ["-v", f"{self.inputs}:/artifacts/inputs:ro",
                "-v", f"{self.root / 'inputs.json'}:/theoryx/inputs.json:ro",
                "-v", f"{self.outputs}:/artifacts/outputs", "-v", f"{self.result}:/theoryx/result",
                "-e", "THEORYX_INPUTS=/theoryx/inputs.json",
                "-e", "THEORYX_WRITE_PREFIX=/artifacts/outputs/",
                "-e", "THEORYX_RESULT=/theoryx/result/result.json", "-e", "THEORYX_SEED=0",
                "-e", "THEORYX_EXECUTION_ID=test", "-e", "THEORYX_STREAM=1"]


def test_textstats_image_gives_the_host_result(build: Any, tmp_path: Path) -> None:
    stats = load_script(PROCESSORS / "data" / "textstats" / "stats.py", "theoryx_test_textstats_stats")
    tag = build(PROCESSORS / "data" / "textstats")
    ws = Workspace(tmp_path)
    data = b"city,temp\nOslo,-3.5\nLima,19\n"
    file = ws.attach("weather.csv", data, "text/csv")
    done = _docker("run", *SANDBOX, *ws.mounts({"file": file, "top": 3}), tag, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (ws.outputs / "stats.json").read_bytes() == stats.render(stats.compute(data, "csv", 3))
    assert json.loads((ws.result / "result.json").read_text())["meta"]["format"] == "csv"
    assert done.stdout == f"csv: {len(data)} bytes, 3 lines, 3 words, 2 rows x 2 columns\n"


@pytest.mark.slow
def test_litellm_image_runs_offline_read_only_and_non_root(build: Any, base_image: str,
                                                           tmp_path: Path) -> None:
    """The image with LiteLLM mounted as its vendor/ (the image builder's job in real use):
    imports, streams and writes its outputs with no network at all; the fake provider runs
    inside the container, on its loopback."""
    litellm = importlib.util.find_spec("litellm")
    if litellm is None or litellm.origin is None:
        pytest.skip("litellm is not installed")
    host_python = "{}.{}".format(*sys.version_info[:2])
    probe = _docker("run", "--rm", "--network", "none", base_image, "python3", "-c",
                    "import sys; print('{}.{}'.format(*sys.version_info[:2]))")
    if probe.stdout.strip() != host_python:   # vendored wheels are built for the host's Python
        pytest.skip(f"base image has Python {probe.stdout.strip()}, the host {host_python}")
    site_packages = Path(litellm.origin).parents[1]
    context = tmp_path / "context"
    (context / "vendor").mkdir(parents=True)
    for name in ("Dockerfile", ".dockerignore", "run.py"):
        shutil.copy(PROCESSORS / "llm" / "litellm" / name, context / name)
    tag = build(context)

    ws = Workspace(tmp_path / "ws")
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    inputs = {"messages": [{"role": "user", "content": "Describe."}],
              "api_base": "http://127.0.0.1:18080/v1",
              "attachments": [ws.attach("pixel.png", png, "image/png")]}
    script = ("python3 /fake/openai_server.py --port 18080 --reply 'A red pixel.' --chunk-delay 0.05 "
              "--record /theoryx/result/requests.jsonl >/tmp/fake.log 2>&1 & "
              "n=0; until grep -q listening /tmp/fake.log; do n=$((n+1)); [ $n -gt 100 ] && exit 99; "
              "sleep 0.1; done; exec python3 /app/run.py")
    done = _docker("run", *SANDBOX, *ws.mounts(inputs), "-e", "OPENAI_API_KEY=sk-test-in-container",
                   "-v", f"{site_packages}:/opt/theoryx/vendor:ro",
                   "-v", f"{FAKE_SERVER}:/fake/openai_server.py:ro",
                   "--entrypoint", "sh", tag, "-c", script, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A red pixel."
    assert (ws.outputs / "text" / "response.txt").read_text() == "A red pixel."
    assert json.loads((ws.outputs / "metadata.json").read_text())["stream"] is True
    result = json.loads((ws.result / "result.json").read_text())
    assert result["usage"]["completion_tokens"] == 3 and result["cost_usd"] > 0
    [request] = [json.loads(line) for line in (ws.result / "requests.jsonl").read_text().splitlines()]
    image = request["body"]["messages"][0]["content"][1]
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(png).decode()
