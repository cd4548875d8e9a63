"""The modal adapter's host-side pieces: image recipe, command, output tree, scrubbing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from theoryx.adapters.base import Workspace
from theoryx.adapters.modal import adapter as modal
from theoryx.errors import ModalError, UsageError
from theoryx.spec.context import context_manifest
from theoryx.spec.model import ProcessorSpec


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


def test_staged_context_is_what_the_image_identity_hashes(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\nCOPY . /app\n")
    folder = spec.folder
    (folder / "run.py").write_text("print(1)\n")
    (folder / "notes.md").write_text("ignored\n")
    (folder / ".dockerignore").write_text("notes.md\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.pyc").write_bytes(b"\0")
    os.symlink("run.py", folder / "alias.py")
    stage = tmp_path / "stage"
    recipe = modal.image_recipe(spec, stage, tmp_path / "vendor", force=True)
    assert recipe.context_dir == str(stage) and recipe.dockerfile == str(stage / "Dockerfile")
    assert recipe.force_build and recipe.build_args == {}
    staged = {str(p.relative_to(stage)) for p in stage.rglob("*")}
    assert staged == set(context_manifest(folder).files) | {"vendor"}
    assert (stage / "alias.py").is_symlink() and (stage / "vendor").is_dir()
    assert context_manifest(stage).files == {k: v for k, v in context_manifest(folder).files.items()}


def test_vendored_requirements_are_staged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.adapters.local import images

    spec = make_spec(tmp_path, "FROM a\n")
    (spec.folder / "requirements.txt").write_text("six\n")
    vendored = tmp_path / "vendor-v1" / "key"
    (vendored / "six").mkdir(parents=True)
    (vendored / "six" / "__init__.py").write_text("")
    monkeypatch.setattr(images, "ensure_vendor", lambda folder, root, notice=None: vendored)
    monkeypatch.setattr(modal, "platform_name", lambda: "linux/amd64")
    modal.stage_context(spec, tmp_path / "stage", tmp_path / "vendor-v1")
    assert (tmp_path / "stage" / "vendor" / "six" / "__init__.py").is_file()
    monkeypatch.setattr(modal, "platform_name", lambda: "linux/arm64")
    with pytest.raises(ModalError, match="Modal runs linux/amd64"):
        modal.stage_context(spec, tmp_path / "stage2", tmp_path / "vendor-v1")


def test_names_and_gpus_in_modal_form(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "FROM a\n", adapter={"modal": {"stub_name": "my app/v1"}})
    assert modal.app_name(spec) == "my-app-v1"
    assert modal.app_name(make_spec(tmp_path, "FROM a\n")) == "theoryx-t-p"
    assert [modal.modal_gpu(g) for g in (None, "1", "A10G", "h100:2")] == [None, "any:1", "A10G", "h100:2"]


def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    ws.outputs.mkdir(parents=True)
    return ws


def entry(path: str, kind: str = "file", data: bytes | None = b"x", **kw: object) -> dict[str, object]:
    return {"path": path, "kind": kind, "mode": 0o644, "size": len(data or b""), "nlink": 1, "data": data,
            "target": None, "rdev": 0, **kw}


def test_output_tree_is_recreated_as_it_was(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    modal.recreate_outputs([
        entry("d", "dir", None), entry("d/f.txt", data=b"hello", mode=0o755),
        entry("link", "symlink", None, target="/etc/passwd"), entry("pipe", "fifo", None),
        entry("big", data=None, size=1 << 30), entry("linked", data=b"y", nlink=2),
        entry("sock", "socket", None), entry("dev", "chr", None, rdev=259),
    ], ws)
    out = ws.outputs
    assert (out / "d/f.txt").read_bytes() == b"hello" and os.access(out / "d/f.txt", os.X_OK)
    assert os.readlink(out / "link") == "/etc/passwd"
    assert (out / "pipe").is_fifo() and (out / "dev").is_fifo() and (out / "sock").is_socket()
    assert (out / "big").stat().st_size == 1 << 30 and (out / "big").stat().st_blocks == 0
    assert (out / "linked").stat().st_nlink == 2


@pytest.mark.parametrize("entries", [
    [entry("../escape")],
    [entry("/abs")],
    [entry("a//b")],
    [entry("a", "symlink", None, target="/tmp"), entry("a/b", "symlink", None, target="x")],
    [entry("a"), entry("a/b")],
    [entry("a"), entry("a")],
])
def test_malformed_output_trees_are_refused(tmp_path: Path, entries: list[dict[str, object]]) -> None:
    ws = workspace(tmp_path)
    with pytest.raises(ModalError):
        modal.recreate_outputs(entries, ws)
    assert not (tmp_path / "escape").exists()


def test_scrubber_catches_a_secret_split_across_chunks() -> None:
    scrubber = modal.Scrubber(["hunter22"])
    out = scrubber.feed(b"pass: hun") + scrubber.feed(b"ter22 ok hu") + scrubber.feed(b"m") + scrubber.flush()
    assert out == b"pass: [REDACTED] ok hum"
    assert modal.Scrubber([]).feed(b"as is") == b"as is"
