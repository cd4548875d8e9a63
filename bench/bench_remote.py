"""The team cache on a loopback nginx (WebDAV): a remote hit against a local hit and the round
trip of a trivial GET, and a 1 GiB blob uploaded and downloaded against ``curl`` PUT/GET of the
same file to the same server. Every reference is measured in the same run, interleaved with
what it is compared to; each figure is given as best and median.

1. Hit latency (target: remote hit <= local hit + 3 round trips + the transfer):
   - one round trip: ``curl -w %{time_total}`` of a small GET (connection included), and a GET
     on a warm obstore client (what a remote hit pays per request once connected);
   - in one process (``Session.run``, imports and the HTTP client warm): a remote hit (a fresh
     home: fetch the signed entry, verify it, store its blobs durably, record the hit) and then
     a local hit of the same run;
   - whole ``theoryx run`` processes (the CLI's fast path), the same pair. The requests a
     remote hit makes are counted in nginx's access log.
2. Throughput (target: >= 0.7x curl): upload (HEAD + PUT, streamed from the blob's file) and
   download (GET, hashed while written into an empty CAS, fsynced, published only if it matches
   its cid) of one blob, and ``curl -T`` / ``curl -o`` of the same file; ``--rounds`` rounds,
   interleaved. ``curl -o`` then ``fsync`` (same durability as the CAS) is shown too.

``--code DIR`` runs another checkout's theoryx (e.g. an older commit unpacked with ``git
archive``) under the same method, for before/after figures.

Needs nginx (scripts/nginx-up.sh) and curl.
In-process hits also report how many flushes a remote hit made (per-file fsyncs, or one
``syncfs`` where the store defers: it does not while the machine holds much dirty data, which
changes the figure), and with ``--phases`` the time of each of its parts.

Usage: python bench/bench_remote.py [--runs 10] [--gib 1] [--rounds 3] [--skip-throughput] [--phases] [--code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "remote")]

from nginx_server import PASSWORD, USER, Nginx  # noqa: E402

SPEC = """\
ref: bench/echo@1
description: Writes its text to out.txt.
image:
  ref: example.invalid/echo@sha256:{zeros}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
MOCK = """\
def run(inputs, outdir, ctx):
    (outdir / "out.txt").write_text("echo: " + inputs.get("text", ""))
    return {}
"""
CODE: Path = REPO
"""The checkout whose theoryx is measured (``--code``)."""


def registry(root: Path) -> Path:
    folder = root / "processors" / "bench" / "echo"
    folder.mkdir(parents=True)
    (root / "processors" / "bench" / "echo@1.yaml").write_text(SPEC.format(zeros="0" * 64))
    (folder / "mock.py").write_text(MOCK)
    return root


def ms(values: list[float]) -> str:
    return f"best {min(values) * 1000:7.2f} ms, median {statistics.median(values) * 1000:7.2f} ms"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def log_lines(server: Nginx) -> list[str]:
    """nginx's access log once it has settled (a line is written as a request is finalised,
    which may be just after the client has its answer)."""
    path = server.dir / "access.log"
    lines: list[str] = []
    quiet = time.monotonic()
    while time.monotonic() - quiet < 0.2:
        now = path.read_text().splitlines() if path.exists() else []
        if len(now) != len(lines):
            lines, quiet = now, time.monotonic()
        time.sleep(0.01)
    return lines


def round_trips(server: Nginx, runs: int) -> tuple[list[float], list[float]]:
    """A trivial GET (a 404 of an entry path): curl's time_total, and a warm obstore client's."""
    from theoryx.remote import config, layout
    from theoryx.remote.client import RemoteStore

    path = layout.entry_path("b3:" + "0" * 64)
    curl = []
    for _ in range(max(runs, 20)):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", server.ro_url + path],
                             capture_output=True, text=True, check=True)
        curl.append(float(out.stdout))
    conf = config.load(Path(tempfile.gettempdir()), server.ro_url, env={})
    assert conf is not None
    store = RemoteStore(conf, {})
    store.get_small(path, 1 << 20)
    warm = []
    for _ in range(max(runs, 20)):
        t0 = time.perf_counter()
        store.get_small(path, 1 << 20)
        warm.append(time.perf_counter() - t0)
    return curl, warm


def hits(server: Nginx, work: Path, runs: int, phases: bool = False) -> None:
    from theoryx.provenance import keys

    reg = registry(work / "registry")
    key = work / "alice.key"
    keys.generate(key)
    env = dict(os.environ, THEORYX_REGISTRY=str(reg), THEORYX_REMOTE_USER=USER, THEORYX_REMOTE_PASSWORD=PASSWORD,
               PYTHONPATH=os.pathsep.join([str(CODE), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # -P: not the current directory first on sys.path, so that --code decides which theoryx runs
    args = [sys.executable, "-P", "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref", "bench/echo@1",
            "--inputs-json", json.dumps({"text": "bench"})]
    alice = work / "alice"
    alice.mkdir()
    (alice / "remote.json").write_text(json.dumps({"url": server.url, "upload": True, "signing_key": str(key)}))
    _, first = timed([*args[:4], "--home", str(alice), *args[4:]], env)
    assert first["cache"] == "miss"
    log_lines(server)
    remote_t, local_t, requests = [], [], []
    for i in range(runs):
        bob = work / f"bob{i}"
        bob.mkdir()
        (bob / "remote.json").write_text(json.dumps({"url": server.ro_url, "trusted_keys": [str(key) + ".pub"]}))
        cmd = [*args[:4], "--home", str(bob), *args[4:]]
        # Warm the home first (its spec cache, its database) with another input: a local miss
        # and a remote miss (404), so that both measured runs find the same warm home.
        warm = [*cmd[:-1], json.dumps({"text": f"warm {i}"})]
        assert timed(warm, env)[1]["cache"] == "miss"
        before = len(log_lines(server))
        t, body = timed(cmd, env)
        assert body["cache"] == "remote", body
        requests.append(log_lines(server)[before:])
        remote_t.append(t)
        t, body = timed(cmd, env)
        assert body["cache"] == "hit", body
        local_t.append(t)
    curl_rtt, warm_rtt = round_trips(server, runs)
    in_remote, in_local, spy = in_process(work, reg, key, server, runs, phases)
    rtt = statistics.median(curl_rtt)
    print(f"one round trip, curl small GET (time_total)  : {ms(curl_rtt)}")
    print(f"one round trip, warm obstore client GET      : {ms(warm_rtt)}")
    print(f"requests per remote hit: {len(requests[-1])}: {[r.split(chr(34))[1] for r in requests[-1]]}")
    for name, remote, local in (("in one process (Session.run)", in_remote, in_local),
                                ("whole `theoryx run` process", remote_t, local_t)):
        print(f"{name}:")
        print(f"  local hit  : {ms(local)}")
        print(f"  remote hit : {ms(remote)}")
        best = min(remote) - min(local)
        med = statistics.median(remote) - statistics.median(local)
        print(f"  remote - local: best {best * 1000:6.2f} ms = {best / rtt:5.1f} round trips, median "
              f"{med * 1000:6.2f} ms = {med / rtt:5.1f} round trips (target: <= 3 round trips + transfer)")
        if remote is in_remote:
            spy.report()


class Phases:
    """Where an in-process remote hit's time goes (``--phases``): the functions of the hit that
    exist in the measured checkout (an older one may lack some) are wrapped, each call timed
    while a remote hit runs; and the flushes counted (per-file fsyncs and filesystem syncs: a
    store defers its fsyncs to one ``syncfs`` only while the machine holds little dirty data)."""

    SPOTS = (  # (module, attribute, label)
        ("theoryx.remote.cache", "configured", "read remote.json"),
        ("theoryx.remote.client:RemoteStore", "get_small", "GET the entry"),
        ("theoryx.remote.trust", "trusted_keys", "load trusted keys"),
        ("theoryx.remote.trust", "verified", "check the signature"),
        ("theoryx.remote.layout", "decode", "decode, check inline blobs"),
        ("cas.store:Store", "ensure_durable", "blobs found present"),
        ("cas.store:Store", "put_many", "write the blobs"),
        ("cas.store:Store", "put_bytes", "write a blob"),
        ("cas.store:Store", "sync", "sync (syncfs)"),
        ("theoryx.pipeline.hit", "answer", "record the hit"),
    )

    def __init__(self, enabled: bool) -> None:
        import importlib

        from cas import syncing

        self.on = False
        self.times: dict[str, list[float]] = {}
        self.flushes = {"fsync": 0, "syncfs": 0}
        self.hits = 0
        wraps: list[tuple[object, str, str]] = []
        if enabled:
            for where, name, label in self.SPOTS:
                module, _, cls = where.partition(":")
                owner: object = importlib.import_module(module)
                owner = getattr(owner, cls) if cls else owner
                if hasattr(owner, name):
                    wraps.append((owner, name, label))
        for owner, name, label in wraps:
            setattr(owner, name, self._timed(getattr(owner, name), label))
        from cas import staging

        real_fsync, real_fdatasync, real_sync = os.fsync, os.fdatasync, syncing.sync_filesystem

        def fsync(fd: int) -> None:
            self.flushes["fsync"] += self.on
            real_fsync(fd)

        def fdatasync(fd: int) -> None:
            self.flushes["fsync"] += self.on
            real_fdatasync(fd)

        def sync(path: Path) -> None:
            self.flushes["syncfs"] += self.on
            real_sync(path)

        os.fsync, os.fdatasync = fsync, fdatasync
        if hasattr(staging, "_fdatasync"):
            staging._fdatasync = fdatasync
        syncing.sync_filesystem = sync

    def _timed(self, fn: Any, label: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on:
                    self.times.setdefault(label, []).append(time.perf_counter() - t0)
        return timed

    def report(self) -> None:
        print(f"  flushes per remote hit: {self.flushes['fsync'] / self.hits:.1f} fsync/fdatasync, "
              f"{self.flushes['syncfs'] / self.hits:.1f} syncfs")
        for _, _, label in self.SPOTS:
            if label in self.times:
                v = self.times[label]
                print(f"    {label:28s} {len(v) / self.hits:3.1f} calls/hit, per hit: best "
                      f"{min(v) * len(v) / self.hits * 1000:6.3f} ms, median "
                      f"{statistics.median(v) * len(v) / self.hits * 1000:6.3f} ms")


def in_process(work: Path, reg: Path, key: Path, server: Nginx, runs: int,
               phases: bool = False) -> tuple[list[float], list[float], Phases]:
    """Remote hits and local hits through one Session each, after a warm-up run in the same
    process: what the remote adds once imports and the HTTP client are warm."""
    import theoryx

    spy = Phases(phases)
    remote_t, local_t = [], []
    for i in range(max(runs, 20)):
        home = work / f"inproc{i}"
        home.mkdir()
        (home / "remote.json").write_text(json.dumps({"url": server.ro_url, "trusted_keys": [str(key) + ".pub"]}))
        with theoryx.Session(home, registry=str(reg)) as s:
            s.run("bench/echo@1", inputs={"text": f"warm {i}"}, adapter="mock")
            spy.on = True
            t0 = time.perf_counter()
            assert s.run("bench/echo@1", inputs={"text": "bench"}, adapter="mock").cache == "remote"
            remote_t.append(time.perf_counter() - t0)
            spy.on = False
            spy.hits += 1
            t0 = time.perf_counter()
            assert s.run("bench/echo@1", inputs={"text": "bench"}, adapter="mock").cache == "hit"
            local_t.append(time.perf_counter() - t0)
    return remote_t, local_t, spy


def throughput(server: Nginx, work: Path, gib: float, rounds: int) -> None:
    from cas import Store
    from theoryx.remote import config, layout
    from theoryx.remote.client import RemoteStore

    size = int(gib * (1 << 30))
    src = work / "big.bin"
    with open(src, "wb") as f:
        left = size
        while left:
            n = min(left, 64 << 20)
            f.write(os.urandom(n))
            left -= n
    home = Store(work / "a-cas")
    blob = home.put_file(src)
    env = dict(os.environ, THEORYX_REMOTE_USER=USER, THEORYX_REMOTE_PASSWORD=PASSWORD)
    conf = config.load(work, server.url, env={})
    assert conf is not None
    remote = RemoteStore(conf, env)
    path = layout.blob_path(blob.cid)
    auth = f"{USER}:{PASSWORD}"
    ours_up, ours_down, curl_up, curl_down, curl_sync = [], [], [], [], []

    def settle() -> None:
        os.sync()  # no step inherits the previous one's dirty pages
        time.sleep(0.5)

    def our_upload(i: int) -> None:  # HEAD then PUT (the blob is absent: removed before)
        (server.root / path).unlink(missing_ok=True)
        settle()
        t0 = time.perf_counter()
        assert remote.size(path) is None
        remote.upload(path, home, blob.cid)
        ours_up.append(time.perf_counter() - t0)

    def curl_upload(i: int) -> None:
        settle()
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-u", auth, "-T", str(src), f"{server.url}curl-{i}.bin"],
                       check=True)
        curl_up.append(time.perf_counter() - t0)

    def our_download(i: int) -> None:  # into an empty CAS, hashed while written, fsynced, checked
        dest = Store(work / f"b-cas-{i}")
        settle()
        t0 = time.perf_counter()
        got = remote.download(path, blob.cid, dest, blob.size)
        ours_down.append(time.perf_counter() - t0)
        assert got == blob
        shutil.rmtree(work / f"b-cas-{i}")

    def curl_download(i: int) -> None:
        # into a file on the same disk, then (timed apart) an fsync of that file: the CAS makes
        # every blob durable before it names it, curl does not.
        settle()
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", str(work / "curl-down.bin"), f"{server.url}curl-{i}.bin"], check=True)
        curl_down.append(time.perf_counter() - t0)
        fd = os.open(work / "curl-down.bin", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        curl_sync.append(time.perf_counter() - t0)
        (work / "curl-down.bin").unlink()

    for i in range(rounds):
        # theoryx first in even rounds, curl first in odd ones: neither always inherits the
        # disk's state after the other.
        first, second = (our_upload, curl_upload) if i % 2 == 0 else (curl_upload, our_upload)
        first(i)
        second(i)
        first, second = (our_download, curl_download) if i % 2 == 0 else (curl_download, our_download)
        first(i)
        second(i)
        (server.root / f"curl-{i}.bin").unlink()
    mib = size / (1 << 20)

    def line(what: str, ours: list[float], ref: list[float], ref_name: str) -> None:
        b, m = min(ours), statistics.median(ours)
        rb, rm = min(ref), statistics.median(ref)
        print(f"{gib:g} GiB {what}: theoryx best {b:5.2f} s ({mib / b:5.0f} MiB/s) median {m:5.2f} s | {ref_name} "
              f"best {rb:5.2f} s median {rm:5.2f} s | speed ratio best {rb / b:.2f}x, median {rm / m:.2f}x")

    line("upload  ", ours_up, curl_up, "curl -T")
    line("download", ours_down, curl_down, "curl -o")
    line("download", ours_down, curl_sync, "curl -o + fsync")
    print(f"rounds: theoryx up {[round(x, 2) for x in ours_up]}, curl -T {[round(x, 2) for x in curl_up]}, "
          f"theoryx down {[round(x, 2) for x in ours_down]}, curl -o {[round(x, 2) for x in curl_down]}")


def main() -> None:
    global CODE
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-hits", action="store_true")
    parser.add_argument("--phases", action="store_true", help="time the parts of an in-process remote hit")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose theoryx is measured")
    args = parser.parse_args()
    CODE = args.code.resolve()
    sys.path.insert(0, str(CODE))
    import theoryx.remote.client

    print(f"theoryx from {Path(theoryx.remote.client.__file__).parent.parent.parent}")
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        work = Path(tmp)
        server = Nginx(work / "nginx")
        server.start()
        try:
            if not args.skip_hits:
                hits(server, work, args.runs, args.phases)
            if not args.skip_throughput:
                throughput(server, work, args.gib, args.rounds)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
