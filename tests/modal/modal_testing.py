"""A registry of test processors for the modal adapter (a uniquely named helper module).

``test/<name>@1`` share one probe image (processors/probe: its behaviour is chosen by
``inputs["mode"]``) under specs that differ in runtime, limits, secrets and GPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

SPEC = """\
ref: test/{name}@1
image:
  dockerfile: probe/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {runtime}
adapter:
  modal:
    stub_name: theoryx-test-{name}
{extra}inputs:
  type: object
outputs:
  - {{path: out.json, mime: application/json, optional: true}}
"""
SPECS = {
    "probe": ("{cpu: 0.5, memory: 256, timeout: 60}", ""),
    "tight": ("{cpu: 0.5, memory: 64, timeout: 60}", ""),
    "short": ("{cpu: 0.5, memory: 256, timeout: 2}", ""),
    "secret": ("{cpu: 0.5, memory: 256, timeout: 60}", "secrets: [PROBE_SECRET]\n"),
    "tiny": ("{cpu: 0.5, memory: 256, timeout: 60}", "limits: {max_files: 3, max_bytes: 4096}\n"),
    "net": ("{cpu: 0.5, memory: 256, timeout: 60, network: true}", ""),
    "gpu": ("{cpu: 0.5, memory: 256, timeout: 60, gpu: 'l4:2'}", ""),
    "gpucount": ("{cpu: 0.5, memory: 256, timeout: 60, gpu: 2}", ""),
    "gpubad": ("{cpu: 0.5, memory: 256, timeout: 60, gpu: X100}", ""),
    "gpumany": ("{cpu: 0.5, memory: 256, timeout: 60, gpu: 'A10:5'}", ""),
}


def make_registry(root: Path) -> Path:
    """A registry root with the probe processor under every spec of :data:`SPECS`."""
    pdir = root / "processors" / "test"
    pdir.mkdir(parents=True)
    shutil.copytree(HERE / "processors" / "probe", pdir / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    for name, (runtime, extra) in SPECS.items():
        (pdir / f"{name}@1.yaml").write_text(SPEC.format(name=name, runtime=runtime, extra=extra))
    return root


def add_spec(root: Path, name: str, runtime: str, extra: str = "") -> str:
    """Another spec of the probe; its ref."""
    (root / "processors" / "test" / f"{name}@1.yaml").write_text(SPEC.format(name=name, runtime=runtime, extra=extra))
    return f"test/{name}@1"
