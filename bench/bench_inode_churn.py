"""What creating a file costs while other files are being removed, on the filesystem of a directory.

On an ext4 without a journal (this project's benchmark machine: ``/`` is mounted so, the kernel
taking its ``ext4_fsync_nojournal`` path), the inode allocator skips every free inode whose
deletion time is less than a minute old (five while its inode-table block is dirty), checking
each one against the buffer cache, from the start of the block group on: the more files were
removed in the last minute, the longer every new file takes to create. A run that makes and
removes a dozen files (workspace, logs, lock files) thus slows down every later file, its own
blobs included.

Two phases in one run, each in a fresh directory under ``--dir`` (default: the temp directory):

    reference  create one file per step and keep it (nothing removed)
    churn      the same, plus ``--churn`` files created and removed per step

printing the time to create the kept file (``open(O_CREAT)``) per step, in windows of
``--window`` steps, and the ratio of the churn phase's median to the reference's. The files
are removed at the end (which itself poisons the next minute's allocations: wait a minute or
five between runs).

    python bench/bench_inode_churn.py [--seconds 20] [--churn 10] [--window 2000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def phase(root: str, seconds: float, churn: int, window: int) -> list[float]:
    """Microseconds per kept file's creation, one figure per ``window`` steps."""
    kept, scratch = os.path.join(root, "kept"), os.path.join(root, "scratch")
    os.makedirs(kept)
    os.makedirs(scratch)
    figures: list[float] = []
    spent, step, end = 0.0, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        fd = os.open(os.path.join(kept, str(step)), os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        spent += time.perf_counter() - t0
        os.write(fd, b"x")
        os.close(fd)
        for k in range(churn):
            path = os.path.join(scratch, f"{step}.{k}")
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            os.unlink(path)
        step += 1
        if step % window == 0:
            figures.append(spent / window * 1e6)
            spent = 0.0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--churn", type=int, default=10, help="files created and removed per step")
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--dir", default=None, help="where (its filesystem is what is measured)")
    args = parser.parse_args()
    results = {}
    for name, churn in (("reference", 0), ("churn", args.churn)):
        root = tempfile.mkdtemp(prefix="theoryx-bench-inodes-", dir=args.dir)
        try:
            figures = phase(root, args.seconds, churn, args.window)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        results[name] = figures
        shown = " ".join(f"{f:.0f}" for f in figures)
        print(f"{name:9} ({churn:2} removed per step): us per kept file, per {args.window} steps: {shown}")
    if results["reference"] and results["churn"]:
        ref, got = statistics.median(results["reference"]), statistics.median(results["churn"])
        print(f"median: reference {ref:.0f} us, churn {got:.0f} us -> {got / ref:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
