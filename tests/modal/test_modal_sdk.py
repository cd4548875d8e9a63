"""The modal boundary held against the real, installed ``modal`` SDK, offline.

Objects that can be built without Modal's service are built for real (``Image.from_dockerfile``
with the staged context, ``.dockerfile_commands``, ``.entrypoint``, ``Secret.from_dict``,
``Volume.from_name``/``.read_only``, ``App``); every call that would reach the service is
replaced by a recorder that first binds its arguments to the real method's signature
(``inspect.signature(...).bind``). No token exists here and none is set.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import modal
import modal.exception
import modal.volume
import pytest
from theoryx_testing import REPO

from theoryx.adapters.modal import adapter as modal_adapter
from theoryx.adapters.modal import blobs, boundary, sandbox
from theoryx.adapters.modal.boundary import SandboxRequest
from theoryx.errors import ImageBuildError, ModalAuthError, ModalError, ModalUnreachable
from theoryx.spec.refs import Ref
from theoryx.spec.registry import Registry

REAL_CREATE = modal.Sandbox.create
REAL_EXEC = modal.Sandbox.exec
REAL_LOOKUP = modal.App.lookup


def bind(real: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The arguments bound to ``real``'s signature (``TypeError`` when they do not fit)."""
    return dict(inspect.signature(real).bind(*args, **kwargs).arguments)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    boundary.forget()
    yield
    boundary.forget()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``App.lookup`` and ``Sandbox.create`` replaced by recorders bound to the real signatures."""
    seen: dict[str, Any] = {}

    def lookup(*args: Any, **kwargs: Any) -> modal.App:
        seen["lookup"] = bind(REAL_LOOKUP, *args, **kwargs)
        return modal.App(seen["lookup"]["name"])

    def create(*args: Any, **kwargs: Any) -> str:
        seen["create"] = bind(REAL_CREATE, *args, **kwargs)
        return "sandbox"

    monkeypatch.setattr(modal.App, "lookup", lookup)
    monkeypatch.setattr(modal.Sandbox, "create", create)
    return seen


def textstats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The registry's data/textstats@1 and the recipe the adapter stages for it."""
    monkeypatch.delenv("THEORYX_BASE_IMAGE", raising=False)
    spec = Registry.from_option(str(REPO / "registry")).load(Ref.parse("data/textstats@1"))
    return spec, modal_adapter.image_recipe(spec, tmp_path / "stage", tmp_path / "vendor", force=False)


def test_the_sandbox_is_created_with_real_objects_and_arguments_that_bind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, Any]) -> None:
    spec, recipe = textstats(tmp_path, monkeypatch)
    assert recipe.extra_commands[-1] == "USER 10001:10001", "the registry's processors set USER"
    req = SandboxRequest(
        app_name=modal_adapter.app_name(spec), image=recipe, command=sandbox.IDLE, cpu=spec.runtime.cpu,
        memory_mib=spec.runtime.memory, gpu=None, timeout_s=sandbox.sandbox_timeout(spec.runtime.timeout),
        block_network=True, workdir="/", volumes={blobs.CAS_MOUNT: ("theoryx-cas", True)},
        tags={"theoryx.managed": "1", "theoryx.owner": "h/b/1/2"})
    assert boundary.create_sandbox(req) == "sandbox"
    sent = recorded["create"]
    print({k: v for k, v in sent.items() if k != "image"})
    assert sent["args"] == sandbox.IDLE and isinstance(sent["app"], modal.App)
    assert isinstance(sent["image"], modal.Image)
    assert sent["cpu"] == (1.0, 1.0) and sent["memory"] == (256, 256) and sent["timeout"] == 60 + 600
    assert sent["block_network"] is True and sent["workdir"] == "/" and sent["gpu"] is None
    assert sent["tags"] == {"theoryx.managed": "1", "theoryx.owner": "h/b/1/2"}
    (path, vol), = sent["volumes"].items()
    assert path == blobs.CAS_MOUNT and isinstance(vol, modal.Volume)
    assert recorded["lookup"] == {"name": "theoryx-data-textstats", "create_if_missing": True}


def test_the_image_is_built_in_the_app_before_the_sandbox_is_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: dict[str, Any]) -> None:
    """``Image.build(app=)`` is its own step (bound to the real signature); the Sandbox is then
    created with the image it returned."""
    spec, recipe = textstats(tmp_path, monkeypatch)
    real = modal.Image.build
    built: list[dict[str, Any]] = []

    def build(self: modal.Image, *args: Any, **kwargs: Any) -> modal.Image:
        built.append(bind(real, self, *args, **kwargs))
        return self

    monkeypatch.setattr(modal.Image, "build", build)
    req = SandboxRequest(
        app_name=modal_adapter.app_name(spec), image=recipe, command=sandbox.IDLE, cpu=1.0, memory_mib=256, gpu=None,
        timeout_s=660, block_network=True, workdir="/", volumes={}, tags={})
    image = boundary.build_image(req)
    (call,) = built
    assert call["self"] is image and isinstance(call["app"], modal.App) and call["app"].name == "theoryx-data-textstats"
    assert boundary.create_sandbox(req, image) == "sandbox" and recorded["create"]["image"] is image


def test_the_image_is_the_staged_dockerfile_with_the_lines_and_an_empty_entrypoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, recipe = textstats(tmp_path, monkeypatch)
    calls: list[tuple[str, dict[str, Any]]] = []
    real = {name: getattr(modal.Image, name) for name in ("from_dockerfile", "dockerfile_commands", "entrypoint")}

    def spy(name: str, static: bool) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, bind(real[name], *args, **kwargs)))
            return real[name](*args, **kwargs)
        return staticmethod(call) if static else call

    monkeypatch.setattr(modal.Image, "from_dockerfile", spy("from_dockerfile", True))
    monkeypatch.setattr(modal.Image, "dockerfile_commands", spy("dockerfile_commands", False))
    monkeypatch.setattr(modal.Image, "entrypoint", spy("entrypoint", False))
    image = boundary.image(recipe)
    assert isinstance(image, modal.Image)
    (_, fd), (_, dc), (_, ep) = calls
    assert fd["path"] == recipe.dockerfile and fd["context_dir"] == recipe.context_dir and fd["ignore"] == []
    assert fd["build_args"] == {}
    assert Path(recipe.context_dir or "", "vendor", modal_adapter.VENDOR_PLACEHOLDER).exists()
    assert dc["dockerfile_commands"] == recipe.extra_commands and ep["entrypoint_commands"] == []
    pinned = boundary.image(boundary.ImageRecipe(registry_ref="python@sha256:" + "a" * 64))
    assert isinstance(pinned, modal.Image)


def test_secrets_are_a_real_secret_given_to_the_processors_exec_only() -> None:
    secret = boundary.secret({"API_KEY": "value"})
    assert isinstance(secret, modal.Secret)
    seen: dict[str, Any] = {}

    class Sandbox:
        def exec(self, *args: Any, **kwargs: Any) -> str:
            seen.update(bind(REAL_EXEC, self, *args, **kwargs))
            return "process"

    sb: Any = Sandbox()
    assert boundary.exec_bytes(sb, ["python3", "/app/run.py"], workdir="/app", env={"HOME": "/tmp"},
                               secrets=[secret], timeout=65) == "process"
    assert seen["args"] == ("python3", "/app/run.py") and seen["text"] is False and seen["timeout"] == 65
    assert seen["secrets"] == [secret] and seen["env"] == {"HOME": "/tmp"} and seen["workdir"] == "/app"


def test_volume_calls_bind_to_the_real_volume(tmp_path: Path) -> None:
    vol = boundary.volume("theoryx-cas")
    assert isinstance(vol, modal.Volume) and isinstance(vol.read_only(), modal.Volume)
    real_put = modal.volume.AbstractVolumeUploadContextManager.put_file
    put: list[dict[str, Any]] = []

    class Batch:
        def put_file(self, *args: Any, **kwargs: Any) -> None:
            put.append(bind(real_put, self, *args, **kwargs))

    class Volume:
        def __init__(self, entries: list[Any] | Exception) -> None:
            self.entries = entries

        @contextmanager
        def batch_upload(self, *args: Any, **kwargs: Any) -> Iterator[Batch]:
            assert bind(modal.Volume.batch_upload, self, *args, **kwargs)["force"] is True
            yield Batch()

        def listdir(self, *args: Any, **kwargs: Any) -> list[Any]:
            bind(modal.Volume.listdir, self, *args, **kwargs)
            if isinstance(self.entries, Exception):
                raise self.entries
            return self.entries

    local = tmp_path / "blob"
    local.write_bytes(b"x")
    boundary.upload(Volume([]), [(local, "blobs/ab/cd")])  # type: ignore[arg-type]
    assert put == [{"self": put[0]["self"], "local_file": local, "remote_path": "blobs/ab/cd"}]
    entry = modal.volume.FileEntry(path="blobs/ab/cd", type=modal.volume.FileEntryType.FILE, mtime=0, size=7)
    assert boundary.blob_size(Volume([entry]), "blobs/ab/cd") == 7  # type: ignore[arg-type]
    missing = Volume(modal.exception.NotFoundError("no such file"))
    assert boundary.blob_size(missing, "blobs/ab/cd") is None  # type: ignore[arg-type]


def test_listing_tagged_sandboxes_binds(monkeypatch: pytest.MonkeyPatch) -> None:
    real = modal.Sandbox.list

    def listing(*args: Any, **kwargs: Any) -> Iterator[Any]:
        assert bind(real, *args, **kwargs) == {"tags": {"theoryx.managed": "1"}}
        return iter([])

    monkeypatch.setattr(modal.Sandbox, "list", listing)
    assert boundary.tagged({"theoryx.managed": "1"}) == []


@pytest.mark.parametrize(("exc", "expected", "says"), [
    (modal.exception.AuthError("bad token"), ModalAuthError, "modal token new"),
    (modal.exception.ServiceError("unavailable"), ModalUnreachable, "unreachable"),
    (modal.exception.ConnectionError("reset"), ModalUnreachable, "unreachable"),
    (modal.exception.ImageBuildError("step 3 failed", "im-1"), ImageBuildError, "could not build"),
    (modal.exception.ImageBuildError("Image build for im-1 failed.\nView the build logs:\n  modal image logs im-1",
                                     "im-1"), ImageBuildError, "failed. View the build logs: modal image logs im-1"),
    (modal.exception.ResourceExhaustedError("quota"), ModalError, "quota"),
    (modal.exception.InvalidError("gpu"), ModalError, "refused the request"),
    (modal.exception.NotFoundError("app"), ModalError, "no such object"),
    (RuntimeError("boom"), ModalError, "RuntimeError"),
])
def test_modal_exceptions_map_to_theoryx_errors(exc: BaseException, expected: type, says: str) -> None:
    with pytest.raises(expected) as info, boundary.mapped("doing something"):
        raise exc
    print(f"{type(exc).__name__} -> {info.value.code}: {info.value.message}")
    assert type(info.value) is expected and says in info.value.message and "doing something" in info.value.message


def test_the_version_floor_matches_what_the_boundary_calls() -> None:
    """``Sandbox.create(tags=...)`` is the newest call (modal 1.5); the floor says so and the
    installed SDK meets it; ``modal`` is no longer among mypy's ignored imports."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["optional-dependencies"]["modal"] == ["modal>=1.5"]
    ignored = [m for o in project["tool"]["mypy"]["overrides"] for m in o["module"]]
    assert not any(m.startswith("modal") for m in ignored)
    installed = tuple(int(p) for p in re.findall(r"\d+", modal.__version__)[:2])
    assert installed >= (1, 5) and "tags" in inspect.signature(REAL_CREATE).parameters
    print(f"modal {modal.__version__} installed; floor 1.5")


@pytest.mark.slow
def test_mypy_checks_the_boundarys_keywords_against_the_sdk_stubs(tmp_path: Path) -> None:
    """The boundary passes keywords explicitly; with a misspelt one mypy fails against the stubs."""
    if shutil.which("mypy", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("mypy is not installed in this interpreter's environment")
    source = (REPO / "theoryx/adapters/modal/boundary.py").read_text()
    assert "block_network=req.block_network" in source
    broken = tmp_path / "broken_boundary.py"
    broken.write_text(source.replace("block_network=req.block_network", "block_networks=req.block_network"))
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent"]
    good = subprocess.run([*mypy, str(REPO / "theoryx/adapters/modal/boundary.py")], capture_output=True, text=True,
                          cwd=REPO, timeout=600)
    bad = subprocess.run([*mypy, str(broken)], capture_output=True, text=True, cwd=REPO, timeout=600)
    print(bad.stdout.strip().splitlines()[0])
    assert good.returncode == 0, good.stdout
    assert bad.returncode == 1 and 'Unexpected keyword argument "block_networks"' in bad.stdout
