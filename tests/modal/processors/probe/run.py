"""Probe processor for the modal adapter's tests: does what inputs["mode"] says."""

import hashlib
import json
import os
import signal
import socket
import sys
import time

inputs = json.load(open(os.environ["THEORYX_INPUTS"]))
mode = inputs.get("mode", "hello")
prefix = os.environ["THEORYX_WRITE_PREFIX"]


def out(rel, data):
    path = os.path.join(prefix, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__


def hello():
    art = inputs.get("file")
    body = {
        "uid": os.getuid(), "cwd": os.getcwd(), "home": os.environ.get("HOME"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("THEORYX_")},
        "inputs": inputs, "file_text": open(art["$artifact"]).read() if art else None,
        "write_input": attempt(lambda: open(art["$artifact"], "a").close()) if art else None,
        "net": sorted(os.listdir("/sys/class/net")),
    }
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    with open(os.environ["THEORYX_RESULT"], "w") as f:
        json.dump({"usage": {"units": 3}, "cost_usd": 0.25}, f)
    out("sub/note.txt", "nested\n")
    out("out.json", json.dumps(body, sort_keys=True))


def fail():
    print("about to fail")
    print("boom: something went wrong", file=sys.stderr)
    sys.exit(7)


def oom():
    chunks = []
    for _ in range(64):
        chunks.append(bytearray(16 << 20))   # touched: bytearray zero-fills
    out("out.json", json.dumps({"survived": True}))


def sleep():
    print("sleeping", flush=True)
    time.sleep(float(inputs.get("seconds", 60)))
    out("out.json", json.dumps({"slept": True}))


def killed():
    print("killing myself", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def stream():
    for i in range(int(inputs.get("lines", 3))):
        print(f"tick {i}", flush=True)
        time.sleep(float(inputs.get("gap", 0.5)))
    out("out.json", json.dumps({"lines": inputs.get("lines", 3)}))


def secret():
    value = os.environ.get("PROBE_SECRET", "")
    print(f"the secret is {value}", flush=True)
    out("out.json", json.dumps({"sha": hashlib.sha256(value.encode()).hexdigest()}))


def special():
    kind = inputs["kind"]
    if kind == "symlink":
        os.symlink("/etc/hostname", os.path.join(prefix, "link"))
    elif kind == "hardlink":
        out("a.txt", "a")
        os.link(os.path.join(prefix, "a.txt"), os.path.join(prefix, "b.txt"))
    elif kind == "fifo":
        os.mkfifo(os.path.join(prefix, "pipe"))
    elif kind == "setuid":
        out("tool", "#!/bin/sh\n")
        os.chmod(os.path.join(prefix, "tool"), 0o4755)
    elif kind == "exec":
        out("tool.sh", "#!/bin/sh\n")
        os.chmod(os.path.join(prefix, "tool.sh"), 0o755)
    elif kind == "many":
        for i in range(int(inputs.get("count", 10))):
            out(f"f{i:04d}.txt", str(i))
    elif kind == "relink":
        os.rmdir(prefix.rstrip("/"))
        os.symlink("/etc", prefix.rstrip("/"))


def big():
    """Writes ``size`` bytes to big.bin and reports the sha256 of the attachment, both streamed."""
    size, block = int(inputs["size"]), bytes(range(256)) * 4096
    with open(os.path.join(prefix, "big.bin"), "wb") as f:
        left = size
        while left:
            n = f.write(block[:min(left, len(block))])
            left -= n
    h = hashlib.sha256()
    art = inputs.get("file")
    if art:
        with open(art["$artifact"], "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    out("out.json", json.dumps({"size": size, "attachment_sha256": h.hexdigest() if art else None}))


def network():
    def connect():
        socket.create_connection(("1.1.1.1", 53), timeout=2).close()

    out("out.json", json.dumps({"net": sorted(os.listdir("/sys/class/net")), "connect": attempt(connect)}))


def environ():
    """The whole environment (the secret's value as its digest, as outputs are not scrubbed)."""
    env = dict(os.environ)
    if "PROBE_SECRET" in env:
        env["PROBE_SECRET"] = "sha256:" + hashlib.sha256(env["PROBE_SECRET"].encode()).hexdigest()
    out("out.json", json.dumps({"env": env}, sort_keys=True))


def item():
    art = inputs.get("file")
    text = open(art["$artifact"]).read() if art else ""
    out("out.json", json.dumps({"n": inputs["n"], "len": len(text)}))


{"hello": hello, "fail": fail, "oom": oom, "sleep": sleep, "killed": killed, "stream": stream,
 "secret": secret, "special": special, "big": big, "network": network, "item": item, "environ": environ}[mode]()
