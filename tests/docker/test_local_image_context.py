"""A run's image is built from exactly the folder its memo key hashed (or the run fails), and
`theoryx image prune` keeps an image that any spec of the registry still runs.

Each test has a processor of its own (a unique image repository), whose images it removes at
the end; the sync points (``theoryx.core.syncpoints``) hold a run between its key and its image
build while the test edits the processor's folder."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_testing import cli_env, spawn_cli, wait_for
from theoryx_testing import Cli

import theoryx

pytestmark = pytest.mark.docker

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
COPY data.txt /app/data.txt
COPY run.py /app/run.py
"""
RUN_PY = """\
import json, os
inputs = json.load(open(os.environ["THEORYX_INPUTS"]))
data = open("/app/data.txt").read().strip()
with open(os.path.join(os.environ["THEORYX_WRITE_PREFIX"], "out.txt"), "w") as f:
    f.write(f"{data} i={inputs['i']}")
"""
SPEC = """\
ref: {ref}
image: {{dockerfile: s/Dockerfile{extra}}}
command: [python3, /app/run.py]
runtime: {{memory: 256, timeout: 60}}
inputs: {{type: object}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""


class Proc:
    """A processor ``fx<hex>/s@1`` in a registry of its own; its images are removed afterwards."""

    def __init__(self, root: Path) -> None:
        self.ns = "fx" + secrets.token_hex(5)
        self.ref = f"{self.ns}/s@1"
        self.repo = f"theoryx/{self.ns}-s"
        self.registry = root / "registry"
        pdir = self.registry / "processors" / self.ns
        self.folder = pdir / "s"
        self.folder.mkdir(parents=True)
        (self.folder / "Dockerfile").write_text(DOCKERFILE)
        (self.folder / "run.py").write_text(RUN_PY)
        self.data("v1")
        self.spec("s@1", self.ref)

    def spec(self, file: str, ref: str, extra: str = "") -> None:
        (self.registry / "processors" / self.ns / f"{file}.yaml").write_text(SPEC.format(ref=ref, extra=extra))

    def data(self, text: str) -> None:
        (self.folder / "data.txt").write_text(text + "\n")

    def tags(self, client: Any) -> set[str]:
        return {t for img in client.images.list(name=self.repo) for t in img.tags}

    def run(self, home: Path, i: int) -> Any:
        return theoryx.run(self.ref, inputs={"i": i}, adapter="local", home=home, registry=str(self.registry))


@pytest.fixture
def proc(tmp_path: Path, docker_client: Any) -> Iterator[Proc]:
    made = Proc(tmp_path)
    try:
        yield made
    finally:
        for img in docker_client.images.list(name=made.repo):     # only this test's repository
            docker_client.images.remove(img.id, force=True)
        for img in docker_client.images.list(filters={"label": f"theoryx.ref={made.ref}"}):   # untagged ones
            with contextlib.suppress(Exception):
                docker_client.images.remove(img.id, force=True)


def paused(args: list[str], home: Path, proc: Proc, sync: Path) -> subprocess.Popen[bytes]:
    """``theoryx ARGS`` held at before_execute (after its key, before its image is built)."""
    sync.mkdir()
    env = cli_env(home, proc.registry, THEORYX_SYNC_DIR=str(sync), THEORYX_SYNC_POINTS="before_execute")
    child = spawn_cli(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: any(sync.glob("before_execute.*.reached")) or child.poll() is not None, 120,
             "the run to reach before_execute")
    assert child.poll() is None, child.communicate()
    return child


def edited_while_paused(args: list[str], home: Path, proc: Proc, sync: Path) -> tuple[int, bytes, bytes]:
    """``theoryx ARGS`` held at before_execute while data.txt becomes v2, then let go: its exit
    code, stdout and stderr."""
    child = paused(args, home, proc, sync)
    proc.data("v2")
    (sync / "before_execute.go").touch()
    out, err = child.communicate(timeout=300)
    return child.returncode, out, err


def test_a_folder_edited_between_the_key_and_the_build_fails_the_run_and_caches_nothing(
        tmp_path: Path, proc: Proc, docker_client: Any) -> None:
    """The hostile review's repro: key K hashed data.txt = v1, the folder says v2 when the image
    is built. Before the fix the run succeeded with "v2 i=9" under K, and a later run with v1
    was a hit serving "v2 i=9". Now the run fails naming the file, and v1 runs fresh."""
    home = tmp_path / "home"
    code, out, err = edited_while_paused(["run", "--ref", proc.ref, "--adapter", "local", "--inputs-json",
                                          '{"i": 9}', "--json"], home, proc, tmp_path / "sync")
    assert code == 1, (out, err)
    body = json.loads(out)
    assert body["status"] == "error" and body["error"]["code"] == "ERR_IMAGE_BUILD", body
    assert "changed while its image was being built" in body["error"]["message"]
    assert "data.txt (its content differs)" in body["error"]["message"]
    assert proc.tags(docker_client) == set(), "no image was built from the edited folder"

    proc.data("v1")
    again = proc.run(home, 9)
    assert again.cache == "miss" and again.output("out.txt").text() == "v1 i=9"
    proc.data("v2")
    fresh = proc.run(home, 9)
    assert fresh.memo_key != again.memo_key and fresh.output("out.txt").text() == "v2 i=9"


def test_a_folder_edited_mid_batch_leaves_the_batch_on_its_snapshot(
        tmp_path: Path, proc: Proc, docker_client: Any) -> None:
    """The image of the batch's key exists already (an earlier run built it): the batch reuses
    it though the folder was edited after the batch was prepared, so every item runs what its
    key hashed (before the fix: each item re-tagged from the folder, built v2 and cached it
    under the v1 key). Without that image, the items fail rather than build the edited folder."""
    home = tmp_path / "home"
    assert proc.run(home, 0).output("out.txt").text() == "v1 i=0"
    built = proc.tags(docker_client)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"inputs": {"i": i}}) + "\n" for i in (1, 2, 3)))
    batch = ["map", "--ref", proc.ref, "--items", str(items), "--adapter", "local", "--jobs", "2", "--quiet"]
    code, out, err = edited_while_paused(batch, home, proc, tmp_path / "sync")
    assert code == 0, (out, err)
    assert [json.loads(line)["cache"] for line in out.decode().splitlines()] == ["miss"] * 3
    assert proc.tags(docker_client) == built, "nothing was built from the edited folder"
    proc.data("v1")
    for i in (1, 2, 3):
        hit = proc.run(home, i)
        assert hit.cache == "hit" and hit.output("out.txt").text() == f"v1 i={i}"

    for img in docker_client.images.list(name=proc.repo):     # now without the key's image
        docker_client.images.remove(img.id, force=True)
    items.write_text("".join(json.dumps({"inputs": {"i": i}}) + "\n" for i in (4, 5)))
    code, out, err = edited_while_paused(batch, home, proc, tmp_path / "sync2")
    assert code == 1, (out, err)
    codes = [json.loads(line)["error"]["code"] for line in out.decode().splitlines()]
    assert codes == ["ERR_IMAGE_BUILD"] * 2 and proc.tags(docker_client) == set()
    assert proc.run(home, 4).output("out.txt").text() == "v2 i=4"


def test_a_batch_with_build_rebuilds_its_image_once_not_once_per_miss(
        tmp_path: Path, proc: Proc, docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``map --build`` over one-shot items: the first miss rebuilds the image (without the layer
    cache), the others run it. Before the fix every miss rebuilt it, several at once under
    ``--jobs``: 4 items, 4 builds (each leaving the image it replaced dangling)."""
    from theoryx.adapters.local import images
    from theoryx.pipeline.session import Session

    home = tmp_path / "home"
    assert proc.run(home, 0).output("out.txt").text() == "v1 i=0"
    builds: list[str] = []
    real = images.build

    def counted(client: Any, spec: Any, tag: str, *args: Any, **kwargs: Any) -> str:
        builds.append(tag)
        return real(client, spec, tag, *args, **kwargs)

    monkeypatch.setattr(images, "build", counted)
    with Session(home, registry=str(proc.registry)) as session:
        results = list(session.map(proc.ref, [{"inputs": {"i": i}} for i in (1, 2, 3, 4)], jobs=2,
                                   adapter="local", build=True))
    assert [r.result.output("out.txt").text() for r in results if r.result is not None] == [
        f"v1 i={i}" for i in (1, 2, 3, 4)], results
    assert len(builds) == 1, builds
    assert len(proc.tags(docker_client)) == 1


def test_prune_keeps_an_image_that_another_spec_still_runs(tmp_path: Path, proc: Proc, docker_client: Any) -> None:
    """``@1`` and ``@2`` share one folder, so one image (labelled with ``@1``, which built it).
    ``@1`` changes its build args: the image is no longer ``@1``'s but still ``@2``'s, so prune
    keeps it (before the fix: removed as stale, and ``@2``'s next run rebuilt it)."""
    home = tmp_path / "home"
    ref2 = f"{proc.ns}/s@2"
    proc.spec("s@2", ref2)
    cli = Cli(home, proc.registry)
    first = json.loads(cli("image", "build", proc.ref, "--json").stdout)
    second = json.loads(cli("image", "build", ref2, "--json").stdout)
    assert second["image"] == first["image"] and second["built"] is False
    proc.spec("s@1", proc.ref, extra=", build_args: {MODE: b}")

    dry = json.loads(cli("image", "prune", "--dry-run", "--json").stdout)
    mine = [r for r in dry["removed"] + dry["kept"] if r["ref"].startswith(proc.ns + "/")]
    assert [(r["tags"], r["why"]) for r in mine] == [([first["image"]], "current")], dry
    done = cli("image", "prune")
    assert done.exit_code == 0 and first["image"] in proc.tags(docker_client), done.output
    again = json.loads(cli("image", "build", ref2, "--json").stdout)
    assert again == {**second, "built": False}

    rebuilt = json.loads(cli("image", "build", proc.ref, "--json").stdout)      # @1's own image now
    assert rebuilt["image"] != first["image"] and rebuilt["built"] is True
    proc.spec("s@2", ref2, extra=", build_args: {MODE: c}")     # nobody runs the shared image any more
    done = json.loads(cli("image", "prune", "--json").stdout)
    assert [(r["tags"], r["why"]) for r in done["removed"] if r["ref"].startswith(proc.ns + "/")] == [
        ([first["image"]], "stale: not the image its spec builds now")]
    assert proc.tags(docker_client) == {rebuilt["image"]}
