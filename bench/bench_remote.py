"""The team cache on a loopback nginx (WebDAV): a remote hit against a local hit, and a 1 GiB
blob uploaded and downloaded against ``curl`` PUT/GET of the same file to the same server.

1. Hit latency, whole ``theoryx run`` processes (the CLI's fast path), medians of N: a *remote
   hit* (a fresh home each time: fetch the signed entry, verify it, download its blobs in
   parallel, hashed, record the hit) and a *local hit* (the same home again). The requests a
   remote hit makes are counted in nginx's access log; one round trip is the median of N small
   GETs on a warm client. Target: remote <= local + 3 round trips + transfer.
2. Throughput: upload (HEAD + PUT, streamed from the blob's file) and download (GET, hashed while
   written into an empty CAS, fsynced, published only if it matches) of one 1 GiB blob, and
   ``curl -T`` / ``curl -o`` of the same file; best of R, interleaved. Target: >= 0.7x curl.

Needs nginx (scripts/nginx-up.sh). Usage: python bench/bench_remote.py [--runs 10] [--gib 1] [--rounds 2]
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


def registry(root: Path) -> Path:
    folder = root / "processors" / "bench" / "echo"
    folder.mkdir(parents=True)
    (root / "processors" / "bench" / "echo@1.yaml").write_text(SPEC.format(zeros="0" * 64))
    (folder / "mock.py").write_text(MOCK)
    return root


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, object]]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads(out.stdout)


def log_lines(server: Nginx) -> int:
    return len((server.dir / "access.log").read_text().splitlines())


def hits(server: Nginx, work: Path, runs: int) -> None:
    from theoryx.provenance import keys

    reg = registry(work / "registry")
    key = work / "alice.key"
    keys.generate(key)
    env = dict(os.environ, THEORYX_REGISTRY=str(reg), THEORYX_REMOTE_USER=USER, THEORYX_REMOTE_PASSWORD=PASSWORD)
    args = [sys.executable, "-m", "theoryx", "run", "--json", "--adapter", "mock", "--ref", "bench/echo@1",
            "--inputs-json", json.dumps({"text": "bench"})]
    alice = work / "alice"
    alice.mkdir()
    (alice / "remote.json").write_text(json.dumps({"url": server.url, "upload": True, "signing_key": str(key)}))
    _, first = timed([*args[:3], "--home", str(alice), *args[3:]], env)
    assert first["cache"] == "miss"
    remote_t, local_t, requests = [], [], []
    for i in range(runs):
        bob = work / f"bob{i}"
        bob.mkdir()
        (bob / "remote.json").write_text(json.dumps({"url": server.ro_url, "trusted_keys": [str(key) + ".pub"]}))
        cmd = [*args[:3], "--home", str(bob), *args[3:]]
        # Warm the home first (its spec cache, its database) with another input: a local miss
        # and a remote miss (404), so that both measured runs find the same warm home.
        warm = [*cmd[:-1], json.dumps({"text": f"warm {i}"})]
        assert timed(warm, env)[1]["cache"] == "miss"
        before = log_lines(server)
        t, body = timed(cmd, env)
        assert body["cache"] == "remote", body
        requests.append(log_lines(server) - before)
        remote_t.append(t)
        t, body = timed(cmd, env)
        assert body["cache"] == "hit", body
        local_t.append(t)
    from theoryx.remote import cache, config, layout

    conf = config.load(alice)
    assert conf is not None
    store = cache.store_for(conf)
    rtts = []
    for _ in range(max(runs, 20)):
        t0 = time.perf_counter()
        store.get_small(layout.entry_path("b3:" + "0" * 64), 1 << 20)
        rtts.append(time.perf_counter() - t0)
    rtt = statistics.median(rtts)
    r, loc = statistics.median(remote_t), statistics.median(local_t)
    inproc = in_process(work, reg, key, server, runs)
    print(f"local hit (whole process)  : median {loc * 1000:7.1f} ms")
    print(f"remote hit (whole process) : median {r * 1000:7.1f} ms   requests {statistics.median(requests):.0f} "
          "(1 entry GET, then the missing blobs' GETs in parallel: 2 sequential waves)")
    print(f"one round trip (small GET) : median {rtt * 1000:7.2f} ms")
    print(f"remote - local             : {(r - loc) * 1000:7.1f} ms = {(r - loc) / rtt:.1f} round trips "
          f"(target: <= 3 round trips + transfer + opening the client)")
    print(f"in one process (imports and client warm): remote hit {inproc[0] * 1000:.1f} ms, local hit "
          f"{inproc[1] * 1000:.1f} ms: remote - local = {(inproc[0] - inproc[1]) * 1000:.1f} ms = "
          f"{(inproc[0] - inproc[1]) / rtt:.1f} round trips")


def in_process(work: Path, reg: Path, key: Path, server: Nginx, runs: int) -> tuple[float, float]:
    """Median remote hit and local hit through one Session each, after a warm-up run in the same
    process: what the remote adds once imports and the HTTP client are warm."""
    import theoryx

    remote_t, local_t = [], []
    for i in range(runs):
        home = work / f"inproc{i}"
        home.mkdir()
        (home / "remote.json").write_text(json.dumps({"url": server.ro_url, "trusted_keys": [str(key) + ".pub"]}))
        with theoryx.Session(home, registry=str(reg)) as s:
            s.run("bench/echo@1", inputs={"text": f"warm {i}"}, adapter="mock")
            t0 = time.perf_counter()
            assert s.run("bench/echo@1", inputs={"text": "bench"}, adapter="mock").cache == "remote"
            remote_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert s.run("bench/echo@1", inputs={"text": "bench"}, adapter="mock").cache == "hit"
            local_t.append(time.perf_counter() - t0)
    return statistics.median(remote_t), statistics.median(local_t)


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
    for i in range(rounds):
        # ours: HEAD then PUT (the blob is absent: removed before each round)
        (server.root / path).unlink(missing_ok=True)
        t0 = time.perf_counter()
        assert remote.size(path) is None
        remote.upload(path, home, blob.cid)
        ours_up.append(time.perf_counter() - t0)
        # curl PUT of the same file to the same server
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-u", auth, "-T", str(src), f"{server.url}curl-{i}.bin"],
                       check=True)
        curl_up.append(time.perf_counter() - t0)
        # ours: GET into an empty CAS, hashed while written, fsynced, checked against the cid
        dest = Store(work / f"b-cas-{i}")
        t0 = time.perf_counter()
        got = remote.download(path, blob.cid, dest, blob.size)
        ours_down.append(time.perf_counter() - t0)
        assert got == blob
        shutil.rmtree(work / f"b-cas-{i}")
        # curl GET into a file on the same disk, then (timed apart) an fsync of that file: the
        # CAS makes every blob durable before it names it, curl does not.
        t0 = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", str(work / "curl-down.bin"), f"{server.url}curl-{i}.bin"], check=True)
        curl_down.append(time.perf_counter() - t0)
        fd = os.open(work / "curl-down.bin", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        curl_sync.append(time.perf_counter() - t0)
        (work / "curl-down.bin").unlink()
        (server.root / f"curl-{i}.bin").unlink()
    mib = size / (1 << 20)
    up, cu, down, cd = min(ours_up), min(curl_up), min(ours_down), min(curl_down)
    print(f"{gib:g} GiB upload    : theoryx {up:6.2f} s ({mib / up:6.0f} MiB/s)   curl -T {cu:6.2f} s "
          f"({mib / cu:6.0f} MiB/s)   speed ratio {cu / up:.2f}x (target >= 0.7x)")
    cs = min(curl_sync)
    print(f"{gib:g} GiB download  : theoryx {down:6.2f} s ({mib / down:6.0f} MiB/s)   curl -o {cd:6.2f} s "
          f"({mib / cd:6.0f} MiB/s)   speed ratio {cd / down:.2f}x (target >= 0.7x)")
    print(f"{gib:g} GiB download, both durable: curl -o + fsync {cs:6.2f} s ({mib / cs:6.0f} MiB/s)   speed ratio "
          f"{cs / down:.2f}x (theoryx hashes twice, writes into the CAS and fsyncs before publishing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        work = Path(tmp)
        server = Nginx(work / "nginx")
        server.start()
        try:
            hits(server, work, args.runs)
            if not args.skip_throughput:
                throughput(server, work, args.gib, args.rounds)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
