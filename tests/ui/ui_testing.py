"""Helpers of the ``theoryx ui`` tests: a registry with the gallery processor, a home with real
runs, servers (the real ``theoryx ui`` command in a subprocess, or in-process) and a plain HTTP
client that never follows redirects or hides a status."""

from __future__ import annotations

import http.client
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from theoryx.store.handle import open_stores

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ARTIFACTS = HERE / "artifacts"
"""Screenshots of the browser tests (ignored by git)."""
SECRET = "ui-secret-value-7f3a9c"
"""The value of the gallery's secret: it must never appear on any page."""
NASTY = "first <b>run</b> & <script>alert('x')</script>"
"""A note with HTML in it: every page must show it escaped."""

SPEC = """\
ref: ui/gallery@1
description: one output of every kind the ui previews (tests/ui)
image:
  dockerfile: gallery/Dockerfile
command: ["python3", "/app/run.py"]
runtime: {cpu: 1, memory: 256, timeout: 60}
secrets: [UI_SECRET]
cost: {usd: 0.25}
inputs:
  type: object
  additionalProperties: false
  properties:
    note: {type: string}
    size: {type: integer, minimum: 8, maximum: 512}
    file: {type: object}
outputs:
  - {path: data.json, mime: application/json}
  - {path: plot.png, mime: image/png}
"""
REF = "ui/gallery@1"


def make_registry(root: Path) -> Path:
    """A registry root holding ui/gallery@1 (``processors/ui/gallery@1.yaml`` and its folder)."""
    pdir = root / "processors" / "ui"
    pdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(HERE / "processors" / "gallery", pdir / "gallery", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (pdir / "gallery@1.yaml").write_text(SPEC)
    return root


@dataclass
class Site:
    """A home with real runs and what the tests need to know about them."""

    home: Path
    registry: Path
    first: str = ""          # a miss, charged to team-a, with the nasty note
    hit: str = ""            # the same action again: a hit of ``first``
    seeded: str = ""         # another seed: a miss whose key differs from ``first`` by the seed
    attached: str = ""       # a run with an attachment
    failed: str = ""         # a failed run
    invalid: str = ""        # refused before its action was stored (inputs against the schema)
    litellm: str = ""        # the shipped llm/litellm@1 on mock
    ids: list[str] = field(default_factory=list)   # every run, in the order they ran


def gallery_env() -> dict[str, str]:
    return {"UI_SECRET": SECRET}


@contextmanager
def environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_site(home: Path, registry: Path, attachment: Path) -> Site:
    """Run the gallery (and litellm) on the mock adapter: misses, a hit, a failure, a plan with a
    limit, an attachment; pin one run and let one gc record itself."""
    import theoryx
    from theoryx.budget import plans
    from theoryx.errors import TheoryxError
    from theoryx.store import pins
    from theoryx.store.gc.collect import collect
    from theoryx.store.handle import open_stores

    site = Site(home, registry)
    plans.create(open_stores(home).db, "team-a", 5_000_000)
    with environ(**gallery_env()), theoryx.Session(home, registry=str(registry)) as s:
        site.first = s.run(REF, inputs={"note": NASTY}, adapter="mock", plan="team-a").record.execution_id
        site.hit = s.run(REF, inputs={"note": NASTY}, adapter="mock", plan="team-a").record.execution_id
        site.seeded = s.run(REF, inputs={"note": NASTY}, adapter="mock", seed=3, plan="team-a").record.execution_id
        site.attached = s.run(REF, inputs={"note": "with a file", "file": {"$attach": "doc"}},
                              attachments={"doc": attachment}, adapter="mock").record.execution_id
        try:
            s.run(REF, inputs={"note": "this one fails"}, adapter="mock", adapter_options={"exit_code": 3})
        except TheoryxError as exc:
            assert exc.execution_id
            site.failed = exc.execution_id
        try:
            s.run(REF, inputs={"note": "too small", "size": 1}, adapter="mock")
        except TheoryxError as exc:
            assert exc.execution_id
            site.invalid = exc.execution_id
        site.litellm = s.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "Hello"}]},
                             adapter="mock", plan="team-b").record.execution_id
    stores = open_stores(home)
    pins.pin(stores.db, site.first, "kept for the ui tests")
    collect(stores, grace_s=3600)
    site.ids = [site.first, site.hit, site.seeded, site.attached, site.failed, site.invalid, site.litellm]
    return site


@dataclass
class Server:
    process: subprocess.Popen[str] | None
    url: str

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])


def start_cli_server(home: Path, registry: Path, *extra: str) -> Server:
    """``theoryx --home HOME ui --port 0`` in a subprocess; its first stdout line is the URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THEORYX_")}
    env.update(THEORYX_REGISTRY=str(registry))
    open_stores(home)           # ui only reads: it refuses a directory that is no home
    proc = subprocess.Popen([sys.executable, "-m", "theoryx", "--home", str(home), "ui", "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline().strip() if ready else ""
    if not line.startswith("http://"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"theoryx ui did not start: {line!r} {err[-2000:]}")
    return Server(proc, line)


def stop(server: Server) -> str:
    """Stop a subprocess server; return what it wrote on stderr."""
    assert server.process is not None
    server.process.terminate()
    try:
        _, err = server.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        _, err = server.process.communicate(timeout=10)
    return err


@contextmanager
def in_process_server(home: Path) -> Iterator[Server]:
    """The same server, in this process, on a free loopback port."""
    from theoryx.store.handle import open_stores
    from theoryx.ui.server import make_server

    server = make_server(open_stores(home), port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Server(None, server.url)
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(server: Server, target: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Reply:
    """One request, sent as is (``target`` is not normalised: ``..`` and ``%2e`` reach the server)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        names = {k.lower() for k in (headers or {})}
        conn.putrequest(method, target, skip_host="host" in names, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def shot(pg: Any, name: str) -> Path:
    """Save a full-page screenshot of ``pg`` as a test artefact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    return path
