"""Probe processor: does what inputs["mode"] says, reports what it saw in <prefix>/out.json."""

import errno
import json
import os
import socket
import sys
import time

inputs = json.load(open(os.environ["THEORYX_INPUTS"]))
mode = inputs.get("mode", "hello")
prefix = os.environ["THEORYX_WRITE_PREFIX"]


def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def write_out(body):
    with open(os.path.join(prefix, "out.json"), "w") as f:
        json.dump(body, f, sort_keys=True)


def status_field(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def hello():
    art = inputs.get("file")
    body = {
        "uid": os.getuid(), "gid": os.getgid(),
        "net": sorted(os.listdir("/sys/class/net")),
        "build_net": open("/build-net.txt").read().split(),
        "cap_eff": status_field("CapEff"), "no_new_privs": status_field("NoNewPrivs"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("THEORYX_")},
        "home": os.environ.get("HOME"),
        "write_root": attempt(lambda: open("/etc/theoryx-probe", "w").close()),
        "write_tmp": attempt(lambda: open("/tmp/probe", "w").close()),
        "inputs_json": inputs,
        "file_text": open(art["$artifact"]).read() if art else None,
    }
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    with open(os.environ["THEORYX_RESULT"], "w") as f:
        json.dump({"usage": {"units": 3}, "meta": {"probe": True}}, f)
    os.makedirs(os.path.join(prefix, "sub"), exist_ok=True)
    open(os.path.join(prefix, "sub", "note.txt"), "w").write("nested\n")
    write_out(body)


def fail():
    print("about to fail")
    print("boom: something went wrong", file=sys.stderr)
    sys.exit(7)


def oom():
    chunks = []
    for _ in range(64):
        chunks.append(bytearray(16 << 20))   # touched: bytearray zero-fills
    write_out({"survived": True})


def sleep():
    print("sleeping", flush=True)
    time.sleep(float(inputs.get("seconds", 60)))
    write_out({"slept": True})


def forkbomb():
    children = 0
    try:
        for _ in range(10_000):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError as exc:
        print(f"fork failed after {children} children: {exc}", file=sys.stderr)
        sys.exit(3)
    write_out({"children": children})


def write_inputs():
    art = inputs["file"]["$artifact"]
    body = {
        "append_existing": attempt(lambda: open(art, "a").close()),
        "create_new": attempt(lambda: open("/artifacts/inputs/new.txt", "w").close()),
        "chmod": attempt(lambda: os.chmod(art, 0o666)),
        "inputs_json": attempt(lambda: open(os.environ["THEORYX_INPUTS"], "a").close()),
    }
    write_out(body)


def network():
    def connect():
        socket.create_connection((inputs.get("host", "127.0.0.1"), int(inputs.get("port", 9))), timeout=3).close()

    write_out({"net": sorted(os.listdir("/sys/class/net")), "connect": attempt(connect)})


def symlink():
    os.symlink(inputs["target"], os.path.join(prefix, "leak.txt"))
    write_out({"linked": True})


def secret():
    value = os.environ.get("PROBE_SECRET", "")
    print(f"the secret is {value} (stdout)", flush=True)
    # split across writes: a scrubber must hold back a partial match
    sys.stderr.write("the secret is " + value[:5])
    sys.stderr.flush()
    time.sleep(0.2)
    sys.stderr.write(value[5:] + " (stderr)\n")
    sys.stderr.flush()
    if inputs.get("fail"):
        sys.exit(1)
    write_out({"secret_len": len(value)})


def deep():
    """A tree of inputs["levels"] directories (names of inputs["width"] characters) under the prefix."""
    fd = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)
    name = "d" * int(inputs.get("width", 1))
    for _ in range(int(inputs["levels"])):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def stream():
    for i in range(int(inputs.get("lines", 3))):
        print(f"line {i}", flush=True)
        time.sleep(float(inputs.get("gap", 0.5)))
    write_out({"lines": inputs.get("lines", 3)})


{"hello": hello, "fail": fail, "oom": oom, "sleep": sleep, "forkbomb": forkbomb,
 "write_inputs": write_inputs, "network": network, "symlink": symlink, "secret": secret,
 "stream": stream, "deep": deep}[mode]()
