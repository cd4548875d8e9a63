"""The local adapter's pure parts, without an engine: scrubbing, Dockerfile bases, the build
context tar, tags, options, container ownership and the container configuration."""

from __future__ import annotations

import io
import os
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from theoryx.adapters.base import ExecRequest, Workspace
from theoryx.adapters.local import images
from theoryx.adapters.local.adapter import Options, Scrubber, container_config, owner_gone, owner_label
from theoryx.adapters.local.docker_client import socket_path
from theoryx.errors import SpecError, UsageError
from theoryx.spec.model import ProcessorSpec
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry


def load(registry: Path, ref: str) -> ProcessorSpec:
    return Registry((registry,)).load(Ref.parse(ref))


# -- scrubbing a live stream --------------------------------------------------------------------


@pytest.mark.parametrize("cut", range(0, 30))
def test_scrubber_never_lets_a_secret_through_any_chunk_boundary(cut: int) -> None:
    secret = "sk-live-0123456789abcdef"
    data = f"before {secret} middle {secret}".encode()
    scrubber = Scrubber([secret, "no"])      # values shorter than 4 are never scrubbed
    out = scrubber.feed(data[:cut]) + scrubber.feed(data[cut:]) + scrubber.flush()
    assert out == b"before [REDACTED] middle [REDACTED]"


def test_scrubber_without_secrets_passes_chunks_through() -> None:
    scrubber = Scrubber([])
    assert scrubber.feed(b"abc") == b"abc" and scrubber.flush() == b""


def test_scrubber_holds_only_a_possible_secret_prefix() -> None:
    scrubber = Scrubber(["secretvalue"])
    assert scrubber.feed(b"hello sec") == b"hello "
    assert scrubber.feed(b"ond line\n") == b"second line\n"


# -- Dockerfile base images ---------------------------------------------------------------------


def test_base_images_follow_args_stages_and_continuations() -> None:
    text = (
        "# syntax is ignored\n"
        "ARG BASE_IMAGE=python:3.11-slim\n"
        "ARG TOOLS=\"busybox:1\"\n"
        "FROM ${TOOLS} AS tools\n"
        "FROM \\\n  $BASE_IMAGE AS app\n"
        "FROM tools\n"
        "FROM scratch\n"
        "FROM ${MISSING:-debian:12}\n"
    )
    assert images.base_images(text, {}) == ["busybox:1", "python:3.11-slim", "debian:12"]
    assert images.base_images(text, {"BASE_IMAGE": "theoryx/python-base:bookworm"})[1] == "theoryx/python-base:bookworm"


# -- the build context --------------------------------------------------------------------------


def make_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "proc"
    (folder / "pkg" / "__pycache__").mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM x\n")
    (folder / "run.py").write_text("print(1)\n")
    os.chmod(folder / "run.py", 0o700)
    (folder / "pkg" / "mod.py").write_text("X = 1\n")
    (folder / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"pyc")
    (folder / "secret.env").write_text("TOKEN=1\n")
    (folder / ".dockerignore").write_text("*.env\n")
    (folder / "link").symlink_to("run.py")
    return folder


def read_tar(chunks: Any) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_context_tar_holds_the_manifest_files_normalised_and_an_empty_vendor(tmp_path: Path) -> None:
    from theoryx.spec.context import context_manifest

    folder = make_folder(tmp_path)
    files = context_manifest(folder).files
    members = read_tar(images.context_tar(folder, files, None))
    assert set(members) == {".dockerignore", "Dockerfile", "link", "pkg", "pkg/mod.py", "run.py", "vendor"}
    assert members["run.py"].mode == 0o755 and members["pkg/mod.py"].mode == 0o644
    assert members["link"].issym() and members["link"].linkname == "run.py"
    assert members["vendor"].isdir()
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    again = b"".join(images.context_tar(folder, files, None))
    assert again == b"".join(images.context_tar(folder, files, None))      # deterministic


def test_context_tar_adds_the_vendored_tree(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    vendor = tmp_path / "vendored"
    (vendor / "lib" / "sub").mkdir(parents=True)
    (vendor / "lib" / "sub" / "m.py").write_text("Y = 2\n")
    from theoryx.spec.context import context_manifest

    files = {"run.py": context_manifest(folder).files["run.py"]}
    with tarfile.open(fileobj=io.BytesIO(b"".join(images.context_tar(folder, files, vendor)))) as tar:
        member = tar.getmember("vendor/lib/sub/m.py")
        body = tar.extractfile(member)
        assert body is not None and body.read() == b"Y = 2\n"
        assert tar.getmember("vendor/lib/sub").isdir()


@pytest.mark.parametrize(("edit", "how"), [
    (lambda f: (f / "run.py").write_text("print(2)\n"), "its content differs"),      # same size
    (lambda f: (f / "run.py").write_text("print(1)\n# more\n"), "it grew"),
    (lambda f: (f / "run.py").write_text("p\n"), "it shrank"),
    (lambda f: (f / "run.py").unlink(), "it is gone"),
    (lambda f: ((f / "run.py").unlink(), (f / "run.py").symlink_to("Dockerfile")), "the symbolic link differs"),
    (lambda f: ((f / "link").unlink(), (f / "link").symlink_to("pkg/mod.py")), "the symbolic link differs"),
    (lambda f: ((f / "link").unlink(), (f / "link").write_text("print(1)\n")), "it shrank"),
    (lambda f: ((f / "pkg" / "mod.py").unlink(), os.mkfifo(f / "pkg" / "mod.py")), "it is no longer a regular file"),
], ids=["same-size", "grew", "shrank", "gone", "file-now-link", "link-retargeted", "link-now-file", "now-fifo"])
def test_context_tar_fails_naming_a_file_that_changed_after_the_manifest(
        tmp_path: Path, edit: Any, how: str) -> None:
    """The files are checked against the manifest as they are streamed: a file that differs from
    it fails the build context, naming the file, and the tar never ends (no image can be built)."""
    from theoryx.errors import ImageBuildError
    from theoryx.spec.context import context_manifest

    folder = make_folder(tmp_path)
    manifest = context_manifest(folder)
    edit(folder)
    sent: list[bytes] = []
    with pytest.raises(ImageBuildError, match=r"the processor folder .* changed while its image was being built"
                       r" from what the run's key hashed: (run\.py|link|pkg/mod\.py) \(" + how) as err:
        for chunk in images.context_tar(folder, manifest.files, None):
            sent.append(chunk)
    assert err.value.code == "ERR_IMAGE_BUILD"
    assert b"print(2)" not in b"".join(sent)         # a changed file's bytes never went out whole


def test_context_tar_sends_what_the_manifest_lists_not_what_appeared_since(tmp_path: Path) -> None:
    """A file that appeared after the manifest was taken is not part of the keyed context and is
    not sent; the executable bit sent is the manifest's."""
    from theoryx.spec.context import context_manifest

    folder = make_folder(tmp_path)
    manifest = context_manifest(folder)
    (folder / "new.py").write_text("X = 2\n")
    os.chmod(folder / "run.py", 0o600)               # the mode is not content: the key has the bit
    members = read_tar(images.context_tar(folder, manifest.files, None))
    assert "new.py" not in members and members["run.py"].mode == 0o755


def test_a_large_file_is_checked_before_its_last_chunk_is_sent(tmp_path: Path) -> None:
    from theoryx.errors import ImageBuildError
    from theoryx.spec.context import context_manifest

    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"a" * (3 * images._CHUNK + 5))
    manifest = context_manifest(folder)
    chunks = images.context_tar(folder, manifest.files, None)
    sent = next(chunks) + next(chunks)                 # the header, the first chunk
    with open(folder / "data.bin", "r+b") as f:        # changed at its end while being sent
        f.seek(3 * images._CHUNK)
        f.write(b"b")
    with pytest.raises(ImageBuildError, match=r"data\.bin \(its content differs\)"):
        for chunk in chunks:
            sent += chunk
    assert len(sent) == 512 + 3 * images._CHUNK      # the last chunk (with the change) was held back


def test_a_dockerfile_changed_after_the_manifest_is_not_read_for_its_bases(tmp_path: Path) -> None:
    from theoryx.errors import ImageBuildError
    from theoryx.spec.context import context_manifest

    folder = make_folder(tmp_path)
    manifest = context_manifest(folder)
    assert images.verified_bytes(folder, "Dockerfile", manifest) == b"FROM x\n"
    (folder / "Dockerfile").write_text("FROM y\n")
    with pytest.raises(ImageBuildError, match=r"Dockerfile \(its content differs\)"):
        images.verified_bytes(folder, "Dockerfile", manifest)
    with pytest.raises(ImageBuildError, match="not part of its build context"):
        images.verified_bytes(folder, "secret.env", manifest)


def test_vendoring_uses_the_requirements_the_manifest_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a run's manifest, the requirements vendored are the listed ones: a requirements.txt
    changed since fails, one that appeared since is not installed, and an installation whose file
    changed while pip read it is not published."""
    from theoryx.errors import ImageBuildError
    from theoryx.spec.context import context_manifest

    folder = tmp_path / "proc"
    folder.mkdir()
    (folder / "run.py").write_text("")
    root = tmp_path / "vendor-v1"
    without = context_manifest(folder)
    (folder / "requirements.txt").write_text("example==1.0\n")
    listed = context_manifest(folder)

    def fake_pip(req: Path, target: Path) -> None:
        (target / "example").mkdir(parents=True)
        if req.read_text() == "example==1.0\n":
            req.write_text("example==2.0\n")          # edited while pip ran

    monkeypatch.setattr(images, "_pip_install", fake_pip)
    assert images.ensure_vendor(folder, root, None, without) is None
    with pytest.raises(ImageBuildError, match=r"requirements\.txt \(its content differs\)"):
        images.ensure_vendor(folder, root, None, listed)
    assert not (root / images.vendor_key(b"example==1.0\n")).exists()
    with pytest.raises(ImageBuildError, match=r"requirements\.txt \(its content differs\)"):
        images.ensure_vendor(folder, root, None, listed)            # now differs before pip runs
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_vendor_is_installed_once_and_published_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "proc"
    folder.mkdir()
    (folder / "requirements.txt").write_text("example==1.0\n")
    calls: list[Path] = []

    def fake_pip(req: Path, target: Path) -> None:
        calls.append(target)
        (target / "example").mkdir(parents=True)
        (target / "example" / "__init__.py").write_text("")

    monkeypatch.setattr(images, "_pip_install", fake_pip)
    root = tmp_path / "vendor-v1"
    first = images.ensure_vendor(folder, root)
    second = images.ensure_vendor(folder, root)
    assert first == second and first is not None and len(calls) == 1
    assert first.name == images.vendor_key(b"example==1.0\n")
    assert (first / "example" / "__init__.py").is_file()
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == [first.name]   # no temp left
    assert images.ensure_vendor(tmp_path, root) is None        # no requirements.txt


def test_image_tag_follows_the_context_and_the_base_image(
        registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load(registry, "test/probe@1")
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "base:a")
    tag_a = images.image_tag(spec)
    assert tag_a.startswith("theoryx/test-probe:") and len(tag_a.split(":")[1]) == 16
    assert images.image_tag(load(registry, "test/probe@1")) == tag_a
    assert images.image_tag(spec, {"base:a": "sha256:1"}) != images.image_tag(spec, {"base:a": "sha256:2"})
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "base:b")
    assert images.image_tag(spec) != tag_a


def test_prune_keeps_what_any_spec_runs_or_might_run(registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image is current when any spec resolves to one of its tags, whichever ref its label
    names; an image of the repository of a spec whose current image cannot be told is kept."""
    probe, pinned = load(registry, "test/probe@1"), load(registry, "test/pinned@1")
    monkeypatch.setattr(images, "resolve_bases", lambda client, spec, context=None: {})
    tag = images.image_tag(probe)
    rows = [{"tags": [tag], "id": "sha256:a", "ref": "test/probe@0"},            # built by another version
            {"tags": ["theoryx/test-probe:00"], "id": "sha256:b", "ref": "test/probe@1"},
            {"tags": ["theoryx/test-pinned:00"], "id": "sha256:c", "ref": "test/pinned@1"},
            {"tags": ["theoryx/test-x:00"], "id": "sha256:d", "ref": "test/x@1"}]
    monkeypatch.setattr(images, "list_images", lambda client: rows)

    def verdicts(specs: dict[str, ProcessorSpec | None]) -> dict[str, str]:
        done = images.prune(object(), specs, dry_run=True)
        return {r["id"][7:]: ("remove: " if r in done.removed else "keep: ") + r["why"]
                for r in (*done.removed, *done.kept)}

    specs: dict[str, ProcessorSpec | None] = {"test/probe@1": probe, "test/probe@0": None, "test/pinned@1": pinned}
    assert verdicts({**specs, "test/probe@0": probe}) == {
        "a": "keep: current", "b": "remove: stale: not the image its spec builds now",
        "c": "keep: its current image cannot be told (spec or base image missing)",
        "d": "keep: not a processor of this registry"}
    assert verdicts(specs)["b"].startswith("keep: its current image cannot be told")   # it may be @0's

    def refused(client: object, spec: ProcessorSpec, context: object = None) -> dict[str, str]:
        raise SpecError("a FIFO in the folder")         # one folder refused: the others are still judged

    monkeypatch.setattr(images, "resolve_bases", refused)
    assert verdicts({**specs, "test/probe@0": probe})["b"].startswith("keep: its current image cannot be told")
    assert verdicts({**specs, "test/probe@0": probe})["d"] == "keep: not a processor of this registry"


# -- options and ownership ----------------------------------------------------------------------


def test_options_default_from_the_spec_and_reject_bad_values(registry: Path) -> None:
    spec = load(registry, "test/probe@1")
    assert Options.parse(spec, {}) == Options(60.0, "none")
    assert Options.parse(load(registry, "test/net@1"), {"timeout": 2, "network": "host"}) == Options(2.0, "host")
    for bad in ({"timeout": 0}, {"timeout": "3"}, {"network": "wifi"}, {"retries": 1}):
        with pytest.raises(UsageError):
            Options.parse(spec, bad)


def test_owner_gone_only_for_dead_processes_of_this_host() -> None:
    assert not owner_gone(owner_label())
    host, boot, pid, start = owner_label().split("/")
    assert owner_gone(f"{host}/{boot}/{2**22 + 7}/1")            # no such pid
    assert owner_gone(f"{host}/{boot}/{pid}/{int(start) + 1}")    # pid reused by another process
    assert owner_gone(f"{host}/another-boot/{pid}/{start}")       # before a reboot
    assert not owner_gone(f"elsewhere/{boot}/{2**22 + 7}/1")      # another host's: never judged
    assert not owner_gone("garbage")
    assert socket.gethostname() == host


def test_socket_path_follows_docker_host() -> None:
    assert socket_path({}) == "/var/run/docker.sock"
    assert socket_path({"DOCKER_HOST": "unix:///tmp/d.sock"}) == "/tmp/d.sock"
    assert socket_path({"DOCKER_HOST": "tcp://10.0.0.1:2375"}) is None


# -- the container configuration ----------------------------------------------------------------


class OfflineClient:
    """The SDK's real request builder (no connection) and a programmable ``info()``."""

    def __init__(self, runtimes: dict[str, Any]) -> None:
        import docker

        self.api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
        self.runtimes = runtimes

    def info(self) -> dict[str, Any]:
        return {"Runtimes": self.runtimes}


def request_for(spec: ProcessorSpec, tmp_path: Path) -> ExecRequest:
    ws = Workspace(tmp_path / "ws")
    return ExecRequest(spec=spec, action={}, inputs={}, workspace=ws, execution_id="01abc", seed=7,
                       write_prefix="/artifacts/outputs/01abc/", secrets={"PROBE_SECRET": "s3cr3t-value"},
                       options={})


def test_container_config_sandboxes_and_passes_secrets_only_in_the_environment(
        registry: Path, tmp_path: Path) -> None:
    spec = load(registry, "test/tight@1")
    cfg = container_config(OfflineClient({}), request_for(spec, tmp_path), "img:1", Options(5, "none"))
    hc = cfg["host_config"]
    assert hc["ReadonlyRootfs"] is True and hc["CapDrop"] == ["ALL"]
    assert hc["SecurityOpt"] == ["no-new-privileges"] and hc["NetworkMode"] == "none"
    assert hc["PidsLimit"] == 32 and hc["Memory"] == hc["MemorySwap"] == 64 << 20
    assert hc["NanoCpus"] == 500_000_000
    assert hc["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=8m"}
    assert {(m["Target"], m["ReadOnly"]) for m in hc["Mounts"]} == {
        ("/artifacts/inputs", True), ("/theoryx/inputs.json", True), ("/theoryx/result", False),
        ("/artifacts/outputs/01abc", False)}
    assert "DeviceRequests" not in hc and "AutoRemove" not in hc
    assert cfg["user"] == ("10001:10001" if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}")
    assert cfg["environment"]["PROBE_SECRET"] == "s3cr3t-value"
    assert cfg["environment"]["THEORYX_SEED"] == "7" and cfg["environment"]["HOME"] == "/tmp"
    assert cfg["labels"]["theoryx.managed"] == "1" and cfg["labels"]["theoryx.execution"] == "01abc"
    assert "s3cr3t-value" not in repr(cfg["labels"]) + repr(cfg["command"]) + cfg["name"]


def test_gpu_spec_requests_devices_where_the_engine_has_a_gpu_runtime(registry: Path, tmp_path: Path) -> None:
    spec = load(registry, "test/gpu@1")
    cfg = container_config(OfflineClient({"nvidia": {}}), request_for(spec, tmp_path), "img:1", Options(5, "none"))
    (req,) = cfg["host_config"]["DeviceRequests"]
    assert req["Count"] == 1 and req["Capabilities"] == [["gpu"]]


def test_engine_times_parse_to_posix_seconds_or_none() -> None:
    """The engine's FinishedAt decides whether a worker ended before a request was sent."""
    from theoryx.adapters.local.workers import _engine_time

    assert _engine_time("1970-01-01T00:00:01.5Z") == 1.5
    assert _engine_time("2026-12-02T12:34:56.123456789Z") == pytest.approx(1796214896.123456789, abs=1e-6)
    assert _engine_time("2026-12-02T12:34:56Z") == 1796214896.0
    assert _engine_time("2026-12-02T12:34:56.x1Z") == 1796214896.0      # a fraction not understood: whole seconds
    for bad in (None, "", "0001-01-01T00:00:00Z", "2026-12-02 12:34:56", "2026-13-02T00:00:00Z", 17.0):
        assert _engine_time(bad) is None
