"""The flood processor's registry and a memory sampler, for the log and output bound tests.

``flood_registry(root)`` builds a registry with the flood processor (tests/docker/processors/flood:
writes as many bytes to stdout, stderr and an output file as its inputs say) under three specs:
``test/flood@1`` (the default log bound), ``test/floodsmall@1`` (``limits.log_bytes: 1 MiB``) and
``test/floodsecret@1`` (secret ``FLOOD_SECRET``).

``measure(argv, env)`` runs a command and samples its ``/proc/<pid>/status`` every few
milliseconds: the peaks of anonymous and file-backed resident memory (``RssAnon``, ``RssFile``)
and the kernel's own peak resident set (``VmHWM``, anonymous and file-backed together).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOOD = HERE / "docker" / "processors" / "flood"
MIB = 1 << 20

_SPEC = """\
ref: test/{name}@1
image:
  dockerfile: flood/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {{cpu: 1, memory: 256, timeout: 600, pids: 64, tmpfs: 16}}
{extra}inputs:
  type: object
outputs:
  - {{path: big.bin, mime: application/octet-stream, optional: true}}
"""
SPECS = {
    "flood": "",
    "floodsmall": f"limits: {{log_bytes: {MIB}}}\n",
    "floodsecret": "secrets: [FLOOD_SECRET]\n",
}


def flood_registry(root: Path) -> Path:
    """A registry under ``root`` holding the flood processor's specs; returns ``root``."""
    pdir = root / "processors" / "test"
    pdir.mkdir(parents=True, exist_ok=True)
    if not (pdir / "flood").exists():
        shutil.copytree(FLOOD, pdir / "flood", ignore=shutil.ignore_patterns("__pycache__"))
    for name, extra in SPECS.items():
        (pdir / f"{name}@1.yaml").write_text(_SPEC.format(name=name, extra=extra))
    return root


@dataclass(frozen=True)
class Peaks:
    """Peak memory of a measured process, in bytes, and how it ended."""

    rss_anon: int
    rss_file: int
    vm_hwm: int
    samples: int
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    def describe(self) -> str:
        return (f"peak RssAnon {self.rss_anon / MIB:.1f} MiB, peak RssFile {self.rss_file / MIB:.1f} MiB, "
                f"VmHWM {self.vm_hwm / MIB:.1f} MiB ({self.samples} samples over {self.seconds:.1f} s)")


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def measure(proc: subprocess.Popen[bytes], interval: float = 0.005) -> Peaks:
    """Sample ``proc`` (started with stdout/stderr pipes) until it exits; its peaks."""
    peaks = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    count = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            status = _status(proc.pid)
            if status:
                count[0] += 1
                for key, value in status.items():
                    peaks[key] = max(peaks[key], value)
            time.sleep(interval)

    t0 = time.monotonic()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=1800)
    finally:
        done.set()
        sampler.join()
    return Peaks(peaks["RssAnon"], peaks["RssFile"], peaks["VmHWM"], count[0], proc.returncode, stdout, stderr,
                 time.monotonic() - t0)
