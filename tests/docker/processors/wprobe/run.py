"""Worker probe: serves theoryx's jsonl worker protocol (THEORYX_WORKER=jsonl) or runs one-shot;
does what inputs["mode"] says and reports what it saw in <outputs>/out.json."""

import json
import os
import socket
import sys
import time

SERVED = 0          # requests this process handled: state kept between requests on purpose
PREVIOUS = None     # the previous request's outputs directory


def handle(env):
    """One request under the one-shot contract variables in ``env``; returns the exit code."""
    global SERVED, PREVIOUS
    SERVED += 1
    inputs = json.load(open(env["THEORYX_INPUTS"]))
    out = env["THEORYX_WRITE_PREFIX"]
    mode = inputs.get("mode", "echo")
    print(f"stderr of {inputs.get('value')}", file=sys.stderr, flush=True)
    print(f"stdout of {inputs.get('value')}")
    started = time.time()
    body = {"mode": mode, "value": inputs.get("value"), "pid": os.getpid(), "host": socket.gethostname(),
            "inputs_seen": sorted(os.listdir("/artifacts/inputs")) if os.path.isdir("/artifacts/inputs") else []}
    if mode == "crash":
        os._exit(3)
    if mode == "sleep":
        time.sleep(float(inputs.get("seconds", 60)))
    if mode == "oom":
        hog = [bytearray(16 << 20) for _ in range(64)]
        body["survived"] = len(hog)
    if mode == "fail":
        print("boom: failing on purpose", file=sys.stderr)
        return 7
    if mode == "garbage":
        os.write(PROTOCOL_FD, b"this is not an answer\n")
    if mode == "stateful":               # only what the request saw: 1 when run one-shot, grows in a worker
        body = {"value": inputs.get("value"), "count": SERVED}
    if mode == "sneak" and PREVIOUS is not None:
        try:
            os.makedirs(PREVIOUS, exist_ok=True)
            with open(os.path.join(PREVIOUS, "sneaked.txt"), "w") as f:
                f.write("written by a later request\n")
            body["sneak"] = "written"
        except OSError as exc:
            body["sneak"] = type(exc).__name__
    if mode != "stateful":
        body["served"] = SERVED
    for name in inputs.get("files", []):
        with open(os.path.join(out, name), "w") as f:
            f.write(f"{name} of {inputs.get('value')}\n")
    if mode != "stateful":
        body["window"] = [started, time.time()]
    with open(os.path.join(out, "out.json"), "w") as f:
        json.dump(body, f, sort_keys=True)
    if mode == "hold":                   # keeps the file open and rewrites it after answering
        import threading

        held = os.open(os.path.join(out, "out.json"), os.O_RDWR)

        def rewrite():
            time.sleep(1.0)
            os.pwrite(held, b"BAD!", 0)
            os.fsync(held)

        threading.Thread(target=rewrite, daemon=True).start()
    PREVIOUS = out
    return 0


PROTOCOL_FD = 1


def serve():
    """The protocol on the real stdout; per request, fds 1 and 2 point at the request's logs."""
    global PROTOCOL_FD
    sys.stdout.flush()
    PROTOCOL_FD = os.dup(1)
    os.dup2(2, 1)
    answers = os.fdopen(PROTOCOL_FD, "w")
    for line in sys.stdin:
        req = json.loads(line)
        env = {"THEORYX_INPUTS": req["inputs_path"], "THEORYX_WRITE_PREFIX": req["outputs_dir"]}
        saved = os.dup(1), os.dup(2)
        for fd, path in ((1, req["stdout_path"]), (2, req["stderr_path"])):
            target = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
            os.dup2(target, fd)
            os.close(target)
        try:
            code = handle(env)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
        answer = {"id": req["id"], "exit_code": code}
        if code:
            answer["error"] = f"mode failed with {code}"
        mode = json.load(open(req["inputs_path"])).get("mode")
        if mode == "bigcode":
            answer["exit_code"] = 2 ** 64
        lines = [answer]
        if mode == "early":              # also answers the next request before it was sent
            lines.append({"id": req["id"] + 1, "exit_code": 0})
        if mode == "double":
            lines.append(answer)
        answers.write("".join(json.dumps(a) + "\n" for a in lines))
        answers.flush()
        if mode == "quit":               # ends between requests, after answering this one
            os._exit(0)


if os.environ.get("THEORYX_WORKER") == "jsonl":
    serve()
else:
    sys.exit(handle(os.environ))
