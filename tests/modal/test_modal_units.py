"""The modal adapter's host-side pieces, without Modal or Docker: command, image recipe, GPU
check, environment class, the blob volume's bookkeeping, the output tree, compute rates."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from theoryx import adapters
from theoryx.adapters.modal import adapter as modal
from theoryx.adapters.modal import blobs, outputs
from theoryx.adapters.modal import sandbox as sandbox_mod
from theoryx.errors import ImageNotFound, ModalError, ModalGpuUnsupported, ModalSandboxError, OutputRejected, UsageError
from theoryx.spec.context import context_manifest
from theoryx.spec.model import OutputLimits, ProcessorSpec


def make_spec(tmp_path: Path, dockerfile: str | None, **fields: object) -> ProcessorSpec:
    folder = tmp_path / "reg" / "p"
    folder.mkdir(parents=True, exist_ok=True)
    raw: dict[str, object] = {"ref": "t/p@1", "inputs": {"type": "object"}, "outputs": []}
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
        raw["image"] = {"dockerfile": "p/Dockerfile"}
    else:
        raw["image"] = {"ref": "ghcr.io/x/y@sha256:" + "a" * 64}
    raw.update(fields)
    source = tmp_path / "reg" / "p@1.yaml"
    source.write_text(yaml.safe_dump(raw))
    return ProcessorSpec.from_mapping(raw, source)


@pytest.mark.parametrize(("dockerfile", "command", "expected"), [
    ('FROM a\nWORKDIR /srv\nWORKDIR app\nCMD ["python3", "run.py"]\n', None, (["python3", "run.py"], "/srv/app")),
    ('FROM a\nENTRYPOINT ["/tini", "--"]\nCMD ["x"]\n', ["python3", "/app/run.py"],
     (["/tini", "--", "python3", "/app/run.py"], "/")),
    ("FROM a\nCMD python3 \\\n  run.py\n", None, (["/bin/sh", "-c", "python3  run.py"], "/")),
    ('FROM a AS build\nWORKDIR /build\nCMD ["make"]\nFROM b\nCMD ["serve"]\n', None, (["serve"], "/")),
])
def test_command_is_what_docker_would_run(tmp_path: Path, dockerfile: str, command: list[str] | None,
                                          expected: tuple[list[str], str]) -> None:
    spec = make_spec(tmp_path, dockerfile, **({"command": command} if command else {}))
    assert modal.command_and_cwd(spec) == expected


def test_prebuilt_image_needs_a_command(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no command"):
        modal.command_and_cwd(make_spec(tmp_path, None))
    spec = make_spec(tmp_path, None, command=["run"])
    assert modal.command_and_cwd(spec) == (["run"], "/")
    recipe = modal.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)
    assert recipe.registry_ref == spec.image.ref and recipe.dockerfile is None




# -- the image ---------------------------------------------------------------------------------


def test_staged_context_is_what_the_image_identity_hashes(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\nCOPY . /app\n")
    folder = spec.folder
    (folder / "run.py").write_text("print(1)\n")
    (folder / "notes.md").write_text("ignored\n")
    (folder / ".dockerignore").write_text("notes.md\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    stage = tmp_path / "stage"
    recipe = modal.image_recipe(spec, stage, tmp_path / "vendor", force=True)
    assert recipe.context_dir == str(stage) and recipe.dockerfile == str(stage / "Dockerfile")
    assert recipe.force_build and recipe.build_args == {} and recipe.extra_commands == (modal.record_env_command(spec),)
    staged = {str(p.relative_to(stage)) for p in stage.rglob("*")}
    assert staged == set(context_manifest(folder).files) | {"vendor", "vendor/" + modal.VENDOR_PLACEHOLDER}
    assert context_manifest(stage).files == context_manifest(folder).files
    print(sorted(staged))


def test_an_empty_vendor_dir_gets_a_file_for_modal_to_upload(tmp_path: Path) -> None:
    """Modal uploads only files that COPY sources match: an empty vendor/ would match none."""
    spec = make_spec(tmp_path, "FROM a\nCOPY vendor/ /opt/theoryx/vendor/\n")
    modal.stage_context(spec, tmp_path / "stage", tmp_path / "vendor-v1")
    assert [p.name for p in (tmp_path / "stage" / "vendor").iterdir()] == [modal.VENDOR_PLACEHOLDER]


def test_a_context_with_links_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\nCOPY . /app\n")
    (spec.folder / "run.py").write_text("print(1)\n")
    os.symlink("run.py", spec.folder / "alias.py")
    with pytest.raises(ModalError, match="follows links") as info:
        modal.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)
    print(info.value.message)


def test_add_of_local_files_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\nADD run.py /app/\n")
    with pytest.raises(ModalError, match="uploads only COPY sources"):
        modal.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)
    url = make_spec(tmp_path / "u", "FROM a\nADD https://example.com/x /x\n")
    modal.image_recipe(url, tmp_path / "stage2", tmp_path / "vendor", force=False)


def test_a_local_only_base_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "theoryx/python-base:bookworm")
    spec = make_spec(tmp_path, "ARG BASE_IMAGE=x\nFROM ${BASE_IMAGE}\n")
    with pytest.raises(ImageNotFound, match="cannot pull"):
        modal.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)
    assert not (tmp_path / "stage").exists()


MKDIRS = "RUN mkdir -p /artifacts /theoryx && chmod 1777 /artifacts /theoryx"


@pytest.mark.parametrize(("dockerfile", "lines"), [
    ("FROM a\nUSER 10001:10001\n", ("USER root", MKDIRS, "RECORD", "USER 10001:10001")),
    ("FROM a\nUSER app\nFROM b\n", ("RECORD",)),
    ("FROM a\nUSER ${U}\n", ("USER root", MKDIRS, "RECORD", "USER ${U}")),
    ("FROM a\n", ("RECORD",)),
])
def test_a_user_in_the_last_stage_gets_the_directories_made_as_root(tmp_path: Path, dockerfile: str,
                                                                    lines: tuple[str, ...]) -> None:
    """The environment is recorded as root when the last stage sets USER (restored as written,
    a variable too: the same scope expands it), else as the image's user."""
    spec = make_spec(tmp_path, dockerfile)
    record = modal.record_env_command(spec)
    assert modal.extra_commands(spec) == tuple(record if line == "RECORD" else line for line in lines)


def test_a_registry_image_gets_its_environment_recorded_too(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, None, command=["run"])
    recipe = modal.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)
    assert recipe.extra_commands == (modal.record_env_command(spec),)


def test_the_recorded_environment_leaves_out_what_a_build_step_adds(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A build step sees the image's ENV plus the last stage's ARGs, theoryx's build args, proxy
    args and what the builder's container and shell set; the last stage's own ENV always stays."""
    monkeypatch.setenv("THEORYX_BASE_IMAGE", "python:3.11-slim")
    spec = make_spec(tmp_path, 'ARG BASE_IMAGE=x\nARG EARLY=1\nFROM ${BASE_IMAGE}\nARG VERSION=2 EXTRA\n'
                               'ENV HOME=/srv A="x y" \\\n    http_proxy=http://p\nENV LEGACY some value\nARG A\n')
    noise = modal.build_noise(spec)
    print(noise)
    assert {"VERSION", "EXTRA", "BASE_IMAGE", "HOSTNAME", "PWD", "SHLVL", "_", "HTTP_PROXY"} <= set(noise)
    assert not {"HOME", "A", "http_proxy", "LEGACY", "EARLY"} & set(noise), "declared by ENV, or not in the stage"
    assert modal.env_names(spec, "ENV") == {"HOME", "A", "http_proxy", "LEGACY"}
    assert modal.shell_noise(spec) == ("_", "SHLVL", "PWD", "OLDPWD")
    assert modal.shell_noise(make_spec(tmp_path / "pwd", "FROM a\nENV PWD=/x\n")) == ("_", "SHLVL", "OLDPWD")
    line = modal.record_env_command(spec)
    argv = json.loads(line.removeprefix("RUN "))
    assert argv[:2] == ["/bin/sh", "-c"], "exec form: whatever SHELL the Dockerfile sets"
    assert argv[2].startswith("unset " + " ".join(noise) + ";") and f"export -p > {sandbox_mod.IMAGE_ENV}" in argv[2]


def test_the_processor_exec_carries_names_not_secret_values(tmp_path: Path) -> None:
    from theoryx.adapters.base import ExecRequest, Workspace

    spec = make_spec(tmp_path, "FROM a\n", command=["python3", "run.py"], secrets=["API_KEY"], env={"MODE": "x y"})
    request = ExecRequest(spec=spec, action={}, inputs={}, workspace=Workspace(tmp_path / "ws"),
                          execution_id="01exec", write_prefix="/artifacts/outputs/", seed=3,
                          secrets={"API_KEY": "s3cr3t-value"}, options={}, stream=None)
    argv = sandbox_mod.processor_argv(plan(False), request)
    print(argv[3:])
    assert argv[:5] == ["/bin/sh", "-c", sandbox_mod.ENV_STAGE1, "theoryx-env", sandbox_mod.ENV_STAGE2]
    assert argv[5:9] == ["1", "API_KEY", sandbox_mod.IMAGE_ENV, str(len(request.env()) + 1)]
    assignments = argv[9:9 + len(request.env()) + 1]
    assert assignments[0] == "HOME=/tmp" and "MODE=x y" in assignments and "THEORYX_SEED=3" in assignments
    assert argv[9 + len(assignments):] == ["-u", "_", "-u", "SHLVL", "-u", "PWD", "-u", "OLDPWD", "--", "run"]
    assert not any("s3cr3t" in a for a in argv), "a secret's value is never on a command line"


def test_a_program_whose_name_has_an_equals_sign_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="contains '='"):
        modal.command_and_cwd(make_spec(tmp_path, "FROM a\n", command=["/opt/a=b/run"]))


def test_vendored_requirements_are_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.adapters.local import images

    spec = make_spec(tmp_path, "FROM a\n")
    (spec.folder / "requirements.txt").write_text("six\n")
    vendored = tmp_path / "vendor-v1" / "key"
    (vendored / "six").mkdir(parents=True)
    (vendored / "six" / "__init__.py").write_text("")
    monkeypatch.setattr(images, "ensure_vendor", lambda folder, root, notice=None, manifest=None: vendored)
    monkeypatch.setattr(modal, "platform_name", lambda: "linux/amd64")
    modal.stage_context(spec, tmp_path / "stage", tmp_path / "vendor-v1")
    assert (tmp_path / "stage" / "vendor" / "six" / "__init__.py").is_file()
    monkeypatch.setattr(modal, "platform_name", lambda: "linux/arm64")
    with pytest.raises(ModalError, match="Modal runs linux/amd64"):
        modal.stage_context(spec, tmp_path / "stage2", tmp_path / "vendor-v1")


def test_the_staged_context_is_the_one_the_key_hashed_or_nothing_is_staged(tmp_path: Path) -> None:
    """Modal builds from the staged copy: it was copied from the folder as it was at run time,
    so a file edited after the run's key was made reached the image under the old key."""
    from theoryx.errors import ImageBuildError
    from theoryx.spec.context import context_manifest

    spec = make_spec(tmp_path, "FROM a\nCOPY data.txt /app/\n")
    (spec.folder / "data.txt").write_text("v1\n")
    (spec.folder / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(spec.folder / "run.sh", 0o755)
    keyed = context_manifest(spec.folder)
    modal.stage_context(spec, tmp_path / "stage", tmp_path / "vendor-v1", keyed)
    assert (tmp_path / "stage" / "data.txt").read_text() == "v1\n"
    assert os.stat(tmp_path / "stage" / "run.sh").st_mode & 0o111
    assert not os.stat(tmp_path / "stage" / "data.txt").st_mode & 0o111
    (spec.folder / "data.txt").write_text("v2\n")
    with pytest.raises(ImageBuildError, match=r"data\.txt \(its content differs\)"):
        modal.stage_context(spec, tmp_path / "stage2", tmp_path / "vendor-v1", keyed)


# -- GPUs, names, options ------------------------------------------------------------------------


@pytest.mark.parametrize(("gpu", "expected"), [
    (None, None), ("A10G", "A10G"), ("h100:2", "H100:2"), ("L40S:8", "L40S:8"), ("a10:4", "A10:4"),
    ("H100!", "H100!"), ("B200+:8", "B200+:8"), ("RTX-PRO-6000", "RTX-PRO-6000"), ("T4:1", "T4"),
])
def test_documented_gpus_in_modal_form(tmp_path: Path, gpu: str | None, expected: str | None) -> None:
    spec = make_spec(tmp_path, "FROM a\n", runtime={"gpu": gpu})
    assert modal.modal_gpu(spec) == expected


@pytest.mark.parametrize(("gpu", "says"), [
    ("2", "a count without a type"), ("any", "not a GPU type"), ("V100", "not a GPU type"),
    ("A10:5", "1 to 4 A10"), ("H100:9", "1 to 8 H100"), ("L4:0", "1 to 8 L4"), ("T4:", "1 to 8 T4"),
    ("RTX-PRO-6000:2", "1 to 1 RTX-PRO-6000"),
])
def test_other_gpus_are_refused_with_what_modal_offers(tmp_path: Path, gpu: str, says: str) -> None:
    spec = make_spec(tmp_path, "FROM a\n", runtime={"gpu": gpu})
    with pytest.raises(ModalGpuUnsupported) as info:
        adapters.check_options("modal", {}, spec)
    print(f"{gpu}: {info.value.message}")
    assert info.value.code == "ERR_MODAL_GPU" and says in info.value.message
    assert "H200" in info.value.message if "type" in says else "GPU(s) to one container" in info.value.message


def test_names_in_modal_form(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\n", adapter={"modal": {"stub_name": "my app/v1"}})
    assert modal.app_name(spec) == "my-app-v1"
    assert modal.app_name(make_spec(tmp_path, "FROM a\n")) == "theoryx-t-p"


def test_the_timeout_option_leaves_room_for_the_margin_in_modals_24_hours() -> None:
    from theoryx.adapters.modal.sandbox import sandbox_timeout

    assert sandbox_timeout(modal.MAX_TIMEOUT_S) <= 24 * 3600
    assert sandbox_timeout(59.2) == 60 + modal.sandbox.SANDBOX_MARGIN_S
    assert modal.ModalAdapter.billing_margin_s >= sandbox_timeout(59.2) - 59.2


# -- the environment class ---------------------------------------------------------------------


def test_modal_runs_are_keyed_apart_from_local_ones(tmp_path: Path) -> None:
    """The decision (BUILD.md, section 9): a Sandbox is not local's container, so the classes
    differ and the same request gets two memo keys; mock stays apart from both."""
    from theoryx.pipeline.action import build
    from theoryx.spec.context import env_identity, image_identity

    assert (adapters.env_class("local"), adapters.env_class("modal"), adapters.env_class("mock")) == (
        "container", "modal", "mock")
    assert modal.ModalAdapter.env_class == "modal"
    spec = make_spec(tmp_path, "FROM a\n")
    keys = {}
    for name in ("local", "modal"):
        cls = adapters.env_class(name)
        image, _ = image_identity(spec, cls)
        keys[name] = build(spec, image=image, env=env_identity(cls), inputs={"x": 1},
                           write_prefix="/artifacts/outputs/", seed=0, salt="").memo_key
    print(keys)
    assert keys["local"] != keys["modal"]
    # the runner that gives the processor exactly the image's ENV is revision 2: no result of the
    # earlier runner (its processes saw Modal's variables) answers a run of this one
    image, _ = image_identity(spec, "modal")
    earlier = {k: v for k, v in env_identity("modal").items() if k != "revision"}
    old_key = build(spec, image=image, env=earlier, inputs={"x": 1}, write_prefix="/artifacts/outputs/", seed=0,
                    salt="").memo_key
    assert env_identity("modal")["revision"] == "2" and old_key != keys["modal"]


# -- the blob volume ---------------------------------------------------------------------------


def test_blob_paths_are_the_cids_hex() -> None:
    cid = "b3:" + "ab" * 32
    assert blobs.blob_path(cid) == "blobs/ab/" + "ab" * 31
    assert blobs.mounted(cid) == "/__theoryx/cas/blobs/ab/" + "ab" * 31


def test_the_volume_name_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert blobs.volume_name() == "theoryx-cas"
    monkeypatch.setenv("THEORYX_MODAL_VOLUME", "team-blobs")
    assert blobs.volume_name() == "team-blobs"


class FakeVolume:
    """The two Volume operations, slow enough for concurrent runs to overlap."""

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.lookups = 0
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()
        self.fail_next = False

    def size_of(self, path: str) -> int | None:
        with self.lock:
            self.lookups += 1
            return self.files.get(path)

    def upload(self, pairs: Sequence[tuple[Path, str]]) -> None:
        time.sleep(0.05)
        with self.lock:
            if self.fail_next:
                self.fail_next = False
                raise ModalError("upload failed")
            self.batches.append([remote for _, remote in pairs])
            for local, remote in pairs:
                self.files[remote] = local.stat().st_size


def blob(tmp_path: Path, name: str, data: bytes) -> blobs.BlobFile:
    from cas.hashing import cid_of_bytes

    path = tmp_path / name
    path.write_bytes(data)
    return blobs.BlobFile(cid_of_bytes(data), len(data), path)


def test_concurrent_runs_upload_each_blob_once(tmp_path: Path) -> None:
    vol, store = FakeVolume(), blobs.BlobVolume("v")
    shared = blob(tmp_path, "shared", b"shared" * 100)
    own = [blob(tmp_path, f"own{i}", b"own %d" % i) for i in range(16)]
    reports = []

    def one(i: int) -> None:
        reports.append(store.ensure([shared, own[i], shared], vol.size_of, vol.upload))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    uploaded = [p for batch in vol.batches for p in batch]
    print(f"16 runs: {len(uploaded)} uploads in {len(vol.batches)} batches, {vol.lookups} lookups")
    assert sorted(uploaded) == sorted({blobs.blob_path(b.cid) for b in [shared, *own]})
    assert sum(r.uploaded for r in reports) == 17 and all(len(b) <= 2 for b in vol.batches)
    again = store.ensure([shared, *own], vol.size_of, vol.upload)
    assert (again.uploaded, again.present) == (0, 17) and vol.lookups == 17, "known blobs are not looked up"


def test_a_blob_already_in_the_volume_is_not_uploaded(tmp_path: Path) -> None:
    vol = FakeVolume()
    b = blob(tmp_path, "b", b"bytes")
    vol.files[blobs.blob_path(b.cid)] = b.size
    report = blobs.BlobVolume("v").ensure([b], vol.size_of, vol.upload)
    assert (report.uploaded, report.present, vol.batches) == (0, 1, [])
    vol.files[blobs.blob_path(b.cid)] = 1                 # a wrong size is not the blob
    assert blobs.BlobVolume("w").ensure([b], vol.size_of, vol.upload).uploaded == 1


def test_a_failed_upload_is_retried_by_the_next_run(tmp_path: Path) -> None:
    vol, store = FakeVolume(), blobs.BlobVolume("v")
    b = blob(tmp_path, "b", b"bytes")
    vol.fail_next = True
    with pytest.raises(ModalError):
        store.ensure([b], vol.size_of, vol.upload)
    assert store.ensure([b], vol.size_of, vol.upload).uploaded == 1


def test_a_run_waiting_for_a_failed_upload_uploads_itself(tmp_path: Path) -> None:
    vol, store = FakeVolume(), blobs.BlobVolume("v")
    b = blob(tmp_path, "b", b"bytes")
    vol.fail_next = True
    errors: list[BaseException] = []
    results: list[blobs.Ensured] = []

    def one() -> None:
        try:
            results.append(store.ensure([b], vol.size_of, vol.upload))
        except ModalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and [r.uploaded for r in results] == [1]


# -- the output tree ---------------------------------------------------------------------------


def tar_of(build: Callable[[tarfile.TarFile], None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        build(tf)
    buf.seek(0)
    return buf


def add(tf: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, len(data) if kind == tarfile.REGTYPE else 0, int(kw.pop("mode", 0o644))
    for k, v in kw.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_the_tree_is_recreated_as_the_processor_left_it(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add(tf, ".", tarfile.DIRTYPE, mode=0o755)
        add(tf, "./d", tarfile.DIRTYPE, mode=0o700)
        add(tf, "./d/f.txt", data=b"hello", mode=0o755)
        add(tf, "./link", tarfile.SYMTYPE, linkname="/etc/passwd")
        add(tf, "./pipe", tarfile.FIFOTYPE)
        add(tf, "./dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add(tf, "./suid", data=b"#!", mode=0o4755)
        add(tf, "./again", tarfile.LNKTYPE, linkname="./d/f.txt")
        add(tf, "./outside", tarfile.LNKTYPE, linkname="./not/archived")

    dest = tmp_path / "out"
    dest.mkdir()
    done = outputs.extract(tar_of(build), dest, OutputLimits(), tmp_path / "links")
    assert (done.files, done.bytes, done.stopped) == (7, 7, False)
    assert (dest / "d/f.txt").read_bytes() == b"hello" and os.access(dest / "d/f.txt", os.X_OK)
    assert os.readlink(dest / "link") == "/etc/passwd"
    assert (dest / "pipe").is_fifo() and (dest / "dev").is_fifo()
    assert (dest / "suid").stat().st_mode & stat.S_ISUID
    assert (dest / "again").stat().st_nlink == 2 and (dest / "outside").stat().st_nlink == 2


def test_extraction_stops_at_a_cap_without_the_bytes(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add(tf, "./small", data=b"x" * 100)
        add(tf, "./big", data=b"y" * 5000)
        add(tf, "./never", data=b"z")

    dest = tmp_path / "out"
    dest.mkdir()
    done = outputs.extract(tar_of(build), dest, OutputLimits(max_bytes=4096), tmp_path / "links")
    assert done.stopped and sorted(p.name for p in dest.iterdir()) == ["big", "small"]
    assert (dest / "big").stat().st_size == 5000 and (dest / "big").stat().st_blocks == 0, "sparse: no bytes"


@pytest.mark.parametrize("name", ["../escape", "/abs", "./a/../../b"])
def test_malformed_archives_are_refused(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ModalSandboxError):
        outputs.extract(tar_of(lambda tf: add(tf, name, data=b"x")), dest, OutputLimits(), tmp_path / "l")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "b").exists()


def test_an_entry_under_a_link_is_refused(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        add(tf, "./a", tarfile.SYMTYPE, linkname="/tmp")
        add(tf, "./a/b", data=b"x")

    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ModalSandboxError, match="non-directory"):
        outputs.extract(tar_of(build), dest, OutputLimits(), tmp_path / "l")


def test_a_root_that_is_not_a_directory_is_rejected(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(OutputRejected):
        outputs.extract(tar_of(lambda tf: add(tf, ".", tarfile.SYMTYPE, linkname="/etc")), dest, OutputLimits(),
                        tmp_path / "l")


def test_an_empty_stream_is_no_outputs_and_no_archive(tmp_path: Path) -> None:
    done = outputs.extract(outputs.reader(iter([])), tmp_path, OutputLimits(), tmp_path / "l")
    assert (done.files, done.complete) == (0, False)


def two_files(tf: tarfile.TarFile) -> None:
    add(tf, ".", tarfile.DIRTYPE, mode=0o755)
    add(tf, "./a", data=b"a" * 700)
    add(tf, "./b", data=b"\0" * 3000)      # zeros at the end of the last member's data


def test_a_whole_archive_is_complete(tmp_path: Path) -> None:
    whole = tar_of(two_files).getvalue()
    chunks = [whole[i:i + 333] for i in range(0, len(whole), 333)]
    done = outputs.extract(outputs.reader(iter(chunks)), tmp_path, OutputLimits(), tmp_path / "l")
    assert (done.files, done.bytes, done.complete) == (2, 3700, True)


def test_gnu_tars_own_stream_is_complete(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x.txt").write_text("x" * 100_000)
    (src / "y").write_bytes(b"")
    data = subprocess.run(["tar", "-cf", "-", "."], cwd=src, capture_output=True, check=True).stdout
    dest = tmp_path / "out"
    dest.mkdir()
    done = outputs.extract(outputs.reader(iter([data])), dest, OutputLimits(), tmp_path / "l")
    assert (done.files, done.complete) == (2, True) and (dest / "d" / "x.txt").stat().st_size == 100_000


@pytest.mark.parametrize("cut", ["after_a_member", "in_the_end_marker", "mid_member"])
def test_a_stream_cut_short_is_incomplete(tmp_path: Path, cut: str) -> None:
    whole = tar_of(two_files).getvalue()
    end = 512 + 512 + 1024 + 512 + 3072      # root, a's header and data, b's header and data
    at = {"after_a_member": end, "in_the_end_marker": end + 512, "mid_member": end - 1000}[cut]
    assert whole[end:] == bytes(len(whole) - end)
    try:
        done = outputs.extract(outputs.reader(iter([whole[:at]])), tmp_path, OutputLimits(), tmp_path / "l")
    except ModalSandboxError:
        assert cut == "mid_member"        # tarfile's own "unexpected end of data"
    else:
        assert not done.complete and cut != "mid_member"


def test_bytes_after_the_end_marker_make_it_incomplete(tmp_path: Path) -> None:
    whole = tar_of(two_files).getvalue() + b"junk"
    done = outputs.extract(outputs.reader(iter([whole])), tmp_path, OutputLimits(), tmp_path / "l")
    assert done.files == 2 and not done.complete


def test_the_chunk_reader_streams(tmp_path: Path) -> None:
    r = outputs.reader(iter([b"ab", b"", b"cde", b"f"]))
    assert r.read(3) == b"abc" and r.read() == b"def"


# -- compute rates -----------------------------------------------------------------------------


def test_sandboxes_bill_at_their_own_cpu_and_memory_rates() -> None:
    from theoryx.budget.pricing import Rates

    rates = Rates()
    function = rates.per_second(1.0, 1024, None)
    box = rates.per_second(1.0, 1024, None, sandbox=True)
    gpu = rates.per_second(1.0, 1024, "H100!", sandbox=True)
    print(f"1 core + 1 GiB per second: function {function}, sandbox {box}, with an H100 {gpu}")
    assert box == Decimal("0.00003942") + Decimal("0.00000672") and function is not None and box > function
    assert gpu == box + Decimal("0.001097") and rates.gpu("B200+:2") == (2, Decimal("0.001736"))


def test_sandbox_rates_name_their_source_and_are_overridden_like_the_other_rates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Sandbox rates come from third-party pages (the constant says which and when); like
    every rate, rates.json in the home overrides them, then THEORYX_RATES."""
    from theoryx.budget import pricing

    source = pricing.MODAL_SANDBOX_RATES_SOURCE
    assert "modal.com/pricing" in source and "2026-11-30" in source and "sandbox_cpu_core_second_usd" in source
    assert all(str(rate) in source for rate in (pricing.MODAL_SANDBOX_CPU_CORE_SECOND,
                                                pricing.MODAL_SANDBOX_MEMORY_GIB_SECOND))
    monkeypatch.delenv(pricing.RATES_ENV, raising=False)
    (tmp_path / pricing.RATES_FILE).write_text(json.dumps({"sandbox_cpu_core_second_usd": "0.00005",
                                                           "sandbox_memory_gib_second_usd": "0.00001"}))
    rates = pricing.load_rates(tmp_path)
    assert rates.per_second(2.0, 2048, None, sandbox=True) == Decimal("0.00012")
    monkeypatch.setenv(pricing.RATES_ENV, json.dumps({"sandbox_cpu_core_second_usd": "0.00004"}))
    rates = pricing.load_rates(tmp_path)
    assert (rates.sandbox_cpu_core_second, rates.sandbox_memory_gib_second) == (Decimal("0.00004"), Decimal("0.00001"))
    assert rates.per_second(2.0, 2048, None) == pricing.Rates().per_second(2.0, 2048, None), "Functions untouched"


# -- verdicts ----------------------------------------------------------------------------------


def plan(gpu: bool) -> sandbox_mod.Plan:
    from theoryx.adapters.modal.boundary import ImageRecipe, SandboxRequest

    req = SandboxRequest(app_name="a", image=ImageRecipe(registry_ref="x"), command=sandbox_mod.IDLE, cpu=1.0,
                         memory_mib=256, gpu="L4" if gpu else None, timeout_s=660, block_network=True, workdir="/",
                         volumes={}, tags={})
    return sandbox_mod.Plan(req, ("run",), "/", 60.0, "/b", (), gpu)


@pytest.mark.parametrize(("gpu", "poll", "status", "expected"), [
    (False, None, 0, (0, False, False, False)),
    (False, None, 3, (3, False, False, False)),
    (False, 124, 137, (137, True, False, True)),             # the Sandbox's own timeout came first
    (False, 137, 137, (137, False, True, True)),             # Modal ended a CPU Sandbox: its memory
    (True, 137, 137, (137, False, False, True)),             # a GPU Sandbox may have been preempted
])
def test_the_verdict_reads_what_the_sandbox_says(monkeypatch: pytest.MonkeyPatch, gpu: bool, poll: int | None,
                                                 status: int, expected: tuple[int, bool, bool, bool]) -> None:
    from theoryx.adapters.modal import boundary

    monkeypatch.setattr(boundary, "poll", lambda sb: poll)
    got = sandbox_mod._verdict(object(), plan(gpu), status, False, 0)  # type: ignore[arg-type]
    print(f"gpu={gpu} sandbox={poll} exit={status}: {got}")
    assert got[:4] == expected
    if poll == 137:
        assert "preempted" in got[4][0] if gpu else "memory limit" in got[4][0]


@pytest.mark.parametrize(("before", "after", "oom"), [(0, 1, True), (2, 2, False), (-1, 1, False), (0, -1, False)])
def test_a_kill_with_the_sandbox_alive_is_oom_only_when_the_cgroup_counted_one(
        monkeypatch: pytest.MonkeyPatch, before: int, after: int, oom: bool) -> None:
    from theoryx.adapters.modal import boundary

    monkeypatch.setattr(boundary, "poll", lambda sb: None)
    out = b"" if after < 0 else b"oom_kill=%d\n" % after
    monkeypatch.setattr(sandbox_mod, "_helper", lambda *a, **k: (0, out, b""))
    assert sandbox_mod._verdict(object(), plan(False), 137, False, before)[2] is oom  # type: ignore[arg-type]


# -- tags and names ----------------------------------------------------------------------------


def test_tags_and_names_keep_to_modals_rules(tmp_path: Path) -> None:
    from modal._utils.name_utils import check_object_name, check_tag_dict

    tags = {modal.TAG_MANAGED: "1", modal.TAG_OWNER: modal.owner_tag(), modal.TAG_REF: modal.tag_value("llm/litellm@1"),
            modal.TAG_EXECUTION: modal.tag_value("01m8q2ckc7hfzvhvh9w4kpp97y")}
    print(tags)
    check_tag_dict(tags)
    assert modal.tag_value("x" * 100) == "x" * 63 and modal.tag_value("") == "-"
    for stub in ("my app/v1", "_x", "a" * 80, "..."):
        name = modal.app_name(make_spec(tmp_path / stub.replace("/", "_"), "FROM a\n",
                                        adapter={"modal": {"stub_name": stub}}))
        check_object_name(name, "App")


def test_an_owner_tag_is_gone_with_its_process_on_this_host_only() -> None:
    import subprocess
    import sys

    assert not modal.owner_tag_gone(modal.owner_tag())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert modal.owner_tag_gone(modal.owner_tag(dead.pid))
    other_host = "000000000000." + modal.owner_tag(dead.pid).split(".", 1)[1]
    assert not modal.owner_tag_gone(other_host) and not modal.owner_tag_gone("garbage")
