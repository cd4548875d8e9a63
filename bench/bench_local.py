"""Overhead of a ``local`` cache miss, as a ratio to a bare ``docker run --rm`` of the same image.

A trivial processor (one ``python3 -c`` writing one output file) is built once; then, interleaved
and N times each, best and median:

    docker run --rm     ``docker run --rm --network none <image> python3 -c ...`` (the reference:
                        same image, same command, the docker CLI's own create/attach/start/wait/rm)
    theoryx API miss    ``theoryx.run(..., adapter="local", no_cache=True)`` in this process
                        (the adapter's engine calls plus hashing, workspace, ingest, receipt)
    theoryx CLI miss    ``python -m theoryx run --no-cache ...`` (adds interpreter start and imports)

Needs a running engine and the base image (``make docker``).

    python bench/bench_local.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CODE = "import os; open(os.environ['THEORYX_WRITE_PREFIX'] + 'out.txt', 'w').write('ok')"
SPEC = f"""\
ref: bench/trivial@1
image:
  dockerfile: trivial/Dockerfile
command: ["python3", "-c", "{CODE}"]
runtime: {{memory: 256, timeout: 60}}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
DOCKERFILE = "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n"


def make_registry(root: Path) -> Path:
    pdir = root / "registry" / "processors" / "bench"
    (pdir / "trivial").mkdir(parents=True)
    (pdir / "trivial@1.yaml").write_text(SPEC)
    (pdir / "trivial" / "Dockerfile").write_text(DOCKERFILE)
    return root / "registry"


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def line(name: str, xs: list[float]) -> str:
    return f"{name:<18}: best {min(xs) * 1000:7.1f} ms  median {statistics.median(xs) * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("THEORYX_BASE_IMAGE", "theoryx/python-base:bookworm")
    import theoryx

    with tempfile.TemporaryDirectory() as tmp:
        registry, home = make_registry(Path(tmp)), Path(tmp) / "home"
        env = dict(os.environ, THEORYX_HOME=str(home), THEORYX_REGISTRY=str(registry),
                   PYTHONPATH=str(REPO))
        theoryx.run("bench/trivial@1", adapter="local", home=home, registry=str(registry))   # builds
        from theoryx.adapters.local import docker_client, images
        from theoryx.spec.refs import Ref
        from theoryx.spec.registry import Registry

        spec = Registry((registry,)).load(Ref.parse("bench/trivial@1"))
        image = images.ensure(docker_client.connect(), spec, home / "vendor-v1").name
        bare_cmd = ["docker", "run", "--rm", "--network", "none", "--user", "10001:10001",
                    "-e", "THEORYX_WRITE_PREFIX=/tmp/", image, "python3", "-c", CODE]
        cli_cmd = [sys.executable, "-m", "theoryx", "run", "--ref", "bench/trivial@1", "--no-cache"]

        def bare() -> None:
            subprocess.run(bare_cmd, check=True, stdout=subprocess.DEVNULL)

        def api_miss() -> None:
            assert theoryx.run("bench/trivial@1", adapter="local", home=home, registry=str(registry),
                           no_cache=True).cache == "miss"

        def cli_miss() -> None:
            subprocess.run(cli_cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=tmp)

        for fn in (bare, api_miss, cli_miss):      # warm up
            fn()
        times: dict[str, list[float]] = {"bare": [], "api": [], "cli": []}
        for _ in range(args.runs):
            times["bare"].append(timed(bare))
            times["api"].append(timed(api_miss))
            times["cli"].append(timed(cli_miss))
    print(f"image {image}, {args.runs} runs each, interleaved")
    print(line("docker run --rm", times["bare"]))
    print(line("theoryx API miss", times["api"]))
    print(line("theoryx CLI miss", times["cli"]))
    for key, name in (("api", "API"), ("cli", "CLI")):
        best = min(times[key]) / min(times["bare"])
        median = statistics.median(times[key]) / statistics.median(times["bare"])
        print(f"ratio {name} / docker run: best {best:.2f}x  median {median:.2f}x")


if __name__ == "__main__":
    main()
