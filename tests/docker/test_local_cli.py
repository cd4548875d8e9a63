"""The local adapter through the command line: runs, interruption, leftovers, images, no engine."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from docker_testing import cli_env, owned_containers, spawn_cli
from theoryx_testing import REPO, Cli

import theoryx
from theoryx.errors import DockerUnavailable

SLEEP = ["run", "--ref", "test/probe@1", "--inputs-json", json.dumps({"mode": "sleep", "seconds": 120})]


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def running_container(client: Any, proc: subprocess.Popen[bytes]) -> Any:
    """The running container started by ``proc`` (or None yet); fails if ``proc`` died."""
    assert proc.poll() is None, proc.communicate()
    found = owned_containers(client, {proc.pid})
    return found[0] if found and found[0]["State"] == "running" else None


def prebuild(registry: Path, home: Path) -> None:
    theoryx.run("test/probe@1", inputs={"mode": "hello"}, adapter="local", home=home, registry=str(registry))


@pytest.mark.docker
def test_cli_run_json_on_local(registry: Path, home: Path) -> None:
    proc = spawn_cli(["run", "--json", "--ref", "test/probe@1", "--inputs-json", '{"mode": "hello", "n": 9}'],
                     cli_env(home, registry), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    body = json.loads(out)
    assert body["status"] == "success" and body["adapter"] == "local" and body["cache"] == "miss"
    assert "/artifacts/outputs/out.json" in [o["path"] for o in body["outputs"]]


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_a_running_cli_run_removes_its_container(
        registry: Path, home: Path, docker_client: Any, sig: signal.Signals) -> None:
    prebuild(registry, home)
    proc = spawn_cli(SLEEP, cli_env(home, registry), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: running_container(docker_client, proc))
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    assert owned_containers(docker_client, {proc.pid}) == []


@pytest.mark.docker
def test_sigterm_while_a_cli_run_builds_its_image_releases_everything_like_ctrl_c(
        tmp_path: Path, home: Path, docker_client: Any) -> None:
    """SIGTERM is handled like Ctrl-C for the whole run, not only while its container runs.
    Before the fix, SIGTERM during the image build killed theoryx outright (no message, killed
    by the signal): its workspace and lease stayed until a gc, and its plan reservation ($0.50)
    stayed counted until ``plan reconcile``."""
    token = secrets.token_hex(6)
    ref = f"t{token}/slow@1"
    folder = tmp_path / "registry" / "processors" / f"t{token}" / "slow"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(f"ARG BASE_IMAGE=python:3.11-slim\nFROM ${{BASE_IMAGE}}\n"
                                       f"RUN sleep 90 && echo {token}\n")
    (folder.parent / "slow@1.yaml").write_text(
        f"ref: {ref}\nimage: {{dockerfile: slow/Dockerfile}}\ncommand: [python3, -c, pass]\n"
        "runtime: {memory: 128, timeout: 60}\ncost: {usd: 0.5}\ninputs: {type: object}\noutputs: []\n")

    def building() -> bool:
        return any(token in (c.get("Command") or "") for c in docker_client.api.containers())

    proc = spawn_cli(["run", "--ref", ref, "--plan", "p", "--inputs-json", "{}"],
                     cli_env(home, tmp_path / "registry"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: building() or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 143, err
    assert b"interrupted" in err, err
    assert list((home / "work-v1").iterdir()) == [] and list((home / "leases").iterdir()) == []
    shown = Cli(home, tmp_path / "registry")("plan", "show", "p", "--json")
    assert json.loads(shown.stdout)["reserved_micros"] == 0, shown.output
    wait_for(lambda: not building(), 60)           # the engine cancels the build it was sending
    for img in docker_client.images.list(filters={"label": f"theoryx.ref={ref}"}):
        with contextlib.suppress(Exception):
            docker_client.images.remove(img.id, force=True)


@pytest.mark.docker
def test_container_of_a_killed_run_is_removed_by_the_next_run(
        registry: Path, home: Path, docker_client: Any) -> None:
    prebuild(registry, home)
    proc = spawn_cli(SLEEP, cli_env(home, registry), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: running_container(docker_client, proc))
    finally:
        proc.kill()
        proc.wait()
    assert len(owned_containers(docker_client, {proc.pid})) == 1      # SIGKILL: nothing could clean up
    theoryx.run("test/probe@1", inputs={"mode": "hello", "n": 10}, adapter="local", home=home, registry=str(registry))
    assert owned_containers(docker_client, {proc.pid}) == []


@pytest.mark.docker
def test_local_cache_hit_never_imports_docker(registry: Path, home: Path) -> None:
    inputs = {"mode": "hello", "n": 11}
    theoryx.run("test/probe@1", inputs=inputs, adapter="local", home=home, registry=str(registry))
    code = (
        "import sys, theoryx as a\n"
        f"r = a.run('test/probe@1', inputs={inputs!r}, adapter='local')\n"
        "assert r.cache == 'hit', r.cache\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('docker', 'requests'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(home, registry), cwd=str(REPO),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.docker
def test_image_build_and_ls_commands(registry: Path, home: Path) -> None:
    cli = Cli(home, registry)
    built = cli("image", "build", "test/probe@1", "--json")
    assert built.exit_code == 0, built.output
    body = json.loads(built.stdout)
    assert body["image"].startswith("theoryx/test-probe:") and body["id"].startswith("sha256:")
    again = cli("image", "build", "test/probe@1")
    assert again.stdout.startswith(f"Up to date: {body['image']}")
    rows = json.loads(cli("image", "ls", "--json").stdout)
    assert any(body["image"] in r["tags"] and r["ref"] == "test/probe@1" for r in rows)


@pytest.mark.docker
def test_image_build_of_a_pinned_image_missing_locally_fails_with_the_fix(registry: Path, home: Path) -> None:
    res = Cli(home, registry)("image", "build", "test/pinned@1")
    assert res.exit_code == 1
    assert res.stderr.startswith("Error: image theoryx/not-here@sha256:")
    assert "docker pull" in res.stderr


# -- no engine: these need no Docker at all --------------------------------------------------


def test_no_engine_is_docker_unavailable_within_a_second(
        registry: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    t0 = time.monotonic()
    with pytest.raises(DockerUnavailable) as ei:
        theoryx.run("test/probe@1", inputs={"mode": "hello"}, adapter="local", home=home, registry=str(registry))
    assert time.monotonic() - t0 < 1.0
    assert ei.value.message.startswith("Docker daemon not running or not installed")
    assert "adapter='mock'" in ei.value.message      # the Python API names the parameter, not the flag


def test_engine_that_never_answers_is_docker_unavailable_quickly(
        registry: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(path))
        mute.listen(8)                      # accepts connections, never answers
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        t0 = time.monotonic()
        with pytest.raises(DockerUnavailable):
            theoryx.run("test/probe@1", inputs={"mode": "hello"}, adapter="local", home=home, registry=str(registry))
        assert time.monotonic() - t0 < 2.5


def test_cli_without_engine_prints_the_error_and_the_mock_hint(registry: Path, home: Path, tmp_path: Path) -> None:
    env = cli_env(home, registry, DOCKER_HOST=f"unix://{tmp_path}/no-such.sock")
    proc = spawn_cli(["run", "--ref", "test/probe@1", "--inputs-json", '{"mode": "hello"}'], env,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().startswith("Error: Docker daemon not running or not installed")
    assert b"--adapter mock" in err


@pytest.mark.docker
def test_image_prune_removes_only_stale_images_of_its_registry(tmp_path: Path, registry: Path, home: Path,
                                                               docker_client: Any) -> None:
    """A processor's folder is edited, so its spec builds a new image: `prune` removes the old
    one and keeps the current one, `--dry-run` only says so, `--all` removes the current one too,
    and images of processors outside the registry are never touched. The processor lives in a
    registry of its own (a copy of the probe, changed so that its images are its own)."""
    import shutil

    own = tmp_path / "own-registry"
    pdir = own / "processors" / "test"
    shutil.copytree(Path(__file__).parent / "processors" / "probe", pdir / "probe",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (pdir / "prunable@1.yaml").write_text(
        "ref: test/prunable@1\nimage: {dockerfile: probe/Dockerfile}\ncommand: [python3, /app/run.py]\n"
        "runtime: {memory: 256, timeout: 60}\ninputs: {type: object}\noutputs: []\n")
    run_py = pdir / "probe" / "run.py"
    run_py.write_text(run_py.read_text() + f"\n# prune test {tmp_path.name}: version 1\n")
    cli = Cli(home, own)
    other = Cli(home, registry)("image", "build", "test/probe@1", "--json")   # another registry's
    assert other.exit_code == 0, other.output
    first = json.loads(cli("image", "build", "test/prunable@1", "--json").stdout)["image"]
    run_py.write_text(run_py.read_text().replace("version 1", "version 2"))
    second = json.loads(cli("image", "build", "test/prunable@1", "--json").stdout)["image"]
    assert first != second

    def tags() -> set[str]:
        return {t for img in docker_client.images.list(filters={"label": "theoryx.identity"}) for t in img.tags}

    dry = cli("image", "prune", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    body = json.loads(dry.stdout)
    assert [r["tags"] for r in body["removed"]] == [[first]] and body["dry_run"] is True
    assert first in tags(), "a dry run removes nothing"
    kept = {t: r["why"] for r in body["kept"] for t in r["tags"]}
    assert kept[second] == "current" and kept[json.loads(other.stdout)["image"]] == "not a processor of this registry"

    done = cli("image", "prune")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"Removed {first} (test/prunable@1, ") and "Removed 1 image(s)" in done.stdout
    assert first not in tags() and second in tags() and json.loads(other.stdout)["image"] in tags()
    again = cli("image", "prune")
    assert "Removed 0 image(s)" in again.stdout

    everything = cli("image", "prune", "--all", "--json")
    assert [r["tags"] for r in json.loads(everything.stdout)["removed"]] == [[second]]
    assert second not in tags() and json.loads(other.stdout)["image"] in tags()


def test_image_commands_without_engine_say_so_without_a_traceback(registry: Path, home: Path, tmp_path: Path) -> None:
    env = cli_env(home, registry, DOCKER_HOST=f"unix://{tmp_path}/no-such.sock")
    for args in (["image", "prune"], ["image", "prune", "--dry-run", "--json"], ["image", "ls"]):
        proc = subprocess.run([sys.executable, "-m", "theoryx", *args], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith("Error: Docker daemon not running or not installed"), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        if "--json" in args:              # the error's envelope on stdout, its stable code
            assert json.loads(proc.stdout)["error"]["code"] == "ERR_DOCKER_UNAVAILABLE"
        else:
            assert proc.stdout == ""
