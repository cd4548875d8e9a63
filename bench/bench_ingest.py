"""How fast does a large file get into the CAS? Compared with cp and b3sum in the same run.

Creates a random file (1 GiB by default) in a temp directory, then measures, best of N:

    cp                  cp SOURCE DEST                      (the copy reference; no fsync)
    cp + fsync          cp, then fsync DEST                 (the same durability as the store)
    put_file            Store.put_file(SOURCE), durable     (copy + hash + fsync + publish)
    put_file no-fsync   Store(root, fsync=False).put_file   (copy + hash + publish)
    b3sum               b3sum SOURCE                        (the hashing reference)
    hash_file           cas.hash_file(SOURCE)

with the CPU time each used (all threads and child processes), and prints put_file / cp and
hash throughput / b3sum throughput. Every operation reads the source
from the page cache (it was just written), so they compete on equal terms. The stores and copies
live in the same directory as the source, hence on the same filesystem. Everything is removed at
the end.

    python bench/bench_ingest.py [--size-mib 1024] [--repeat 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

try:
    import cas
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import cas

MIB = 1 << 20


def main() -> None:
    args = _parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="theoryx-bench-ingest-", dir=args.dir))
    try:
        _run(workdir, size=args.size_mib * MIB, repeat=args.repeat)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the test file (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per operation; the best is kept (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the file and stores (default: $TMPDIR)")
    return parser.parse_args()


def _run(workdir: Path, *, size: int, repeat: int) -> None:
    source = workdir / "source.bin"
    _write_random(source, size)
    b3sum = shutil.which("b3sum")
    counter = iter(range(1_000_000))

    def fresh(name: str) -> Path:
        return workdir / f"{name}-{next(counter)}"

    def cp() -> None:
        subprocess.run(["cp", str(source), str(fresh("cp"))], check=True)

    def cp_fsync() -> None:
        dest = fresh("cp")
        subprocess.run(["cp", str(source), str(dest)], check=True)
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    cids: dict[str, set[str]] = {}

    def put_file(fsync: bool) -> Callable[[], None]:
        def run() -> None:
            blob = cas.Store(fresh("store"), fsync=fsync).put_file(source)
            cids.setdefault("put_file", set()).add(blob.cid)

        return run

    def run_b3sum() -> None:
        assert b3sum is not None
        out = subprocess.run([b3sum, "--no-names", str(source)], check=True, capture_output=True, text=True)
        cids.setdefault("b3sum", set()).add("b3:" + out.stdout.strip())

    def hash_file() -> None:
        cids.setdefault("hash_file", set()).add(cas.hash_file(source).cid)

    operations: dict[str, Callable[[], None]] = {
        "cp": cp,
        "cp + fsync": cp_fsync,
        "put_file": put_file(True),
        "put_file no-fsync": put_file(False),
        "hash_file": hash_file,
    }
    if b3sum is not None:
        operations["b3sum"] = run_b3sum
    best = {name: (float("inf"), 0.0) for name in operations}
    for _ in range(repeat):
        for name, operation in operations.items():  # interleaved, so drifts hit every operation
            best[name] = min(best[name], _timed(operation, workdir))

    if len({cid for found in cids.values() for cid in found}) != 1:
        raise SystemExit(f"the tools disagree on the cid: {cids}")
    _report(best, size=size, repeat=repeat, cpus=os.cpu_count() or 1)


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for offset in range(0, size, 8 * MIB):
            f.write(os.urandom(min(8 * MIB, size - offset)))
        f.flush()
        os.fsync(f.fileno())


def _timed(operation: Callable[[], None], workdir: Path) -> tuple[float, float]:
    """Run ``operation`` once from a clean slate (earlier outputs removed and flushed).

    Returns (wall seconds, CPU seconds of this process and its children, user + system).
    """
    for leftover in workdir.iterdir():
        if leftover.name != "source.bin":
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    os.sync()  # no earlier run's writeback may land inside this one
    cpu_before, start = _cpu_seconds(), time.perf_counter()
    operation()
    return time.perf_counter() - start, _cpu_seconds() - cpu_before


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _report(runs: dict[str, tuple[float, float]], *, size: int, repeat: int, cpus: int) -> None:
    gib = size / (1 << 30)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{size // MIB} MiB random file, best of {repeat}, {cpus} CPUs, load {load:.2f}, blake3 {_blake3_version()}")
    print(f"{'operation':<20}{'seconds':>10}{'GiB/s':>10}{'CPU s':>10}")
    for name, (seconds, cpu) in runs.items():
        print(f"{name:<20}{seconds:>10.3f}{gib / seconds:>10.2f}{cpu:>10.2f}")
    print()
    best = {name: seconds for name, (seconds, _) in runs.items()}
    print(f"put_file / cp                      {best['put_file'] / best['cp']:.2f}   (target <= 1.3)")
    print(f"put_file / (cp + fsync)            {best['put_file'] / best['cp + fsync']:.2f}")
    print(f"put_file no-fsync / cp             {best['put_file no-fsync'] / best['cp']:.2f}")
    if "b3sum" in best:
        ratio = best["b3sum"] / best["hash_file"]
        print(f"hash_file / b3sum throughput       {ratio:.2f}   (target >= 0.8)")
    else:
        print("hash_file / b3sum throughput       n/a   (b3sum not installed: apt-get install b3sum)")


def _blake3_version() -> str:
    import blake3

    return str(getattr(blake3, "__version__", "?"))


if __name__ == "__main__":
    main()
