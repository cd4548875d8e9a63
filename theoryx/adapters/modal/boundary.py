"""The edge to Modal: every call into the ``modal`` client is in this module, and only here are
Modal's exceptions translated into theoryx errors (``raise X(msg) from exc``).

Nothing here decides anything: :mod:`theoryx.adapters.modal.adapter` and
:mod:`theoryx.adapters.modal.sandbox` decide, and call these functions. Each call passes its
arguments by keyword and ``modal`` is not among mypy's ignored imports, so mypy checks every
call against the SDK's own stubs; tests bind the same calls to the installed SDK's signatures
and run them, unchanged, against an emulator of the ``Sandbox``/``Volume`` subset on local
Docker (tests/modal/emulator.py puts its classes in place of ``modal.Sandbox``, ...).

``modal`` is imported only inside the functions, after :func:`require_credentials` passed (the
adapter checks it first), so that importing this module (and a run without credentials) costs
nothing and never touches the network.

What is called (``modal`` >= 1.5, the floor in pyproject.toml: ``tags=`` on
``Sandbox.create`` came with 1.5):

- ``App.lookup(name, create_if_missing=True)``: the app a Sandbox belongs to (one per processor,
  the spec's ``adapter.modal.stub_name``);
- ``Image.from_dockerfile(...)`` / ``Image.from_registry(...)``, ``.dockerfile_commands(...)``,
  ``.entrypoint([])``: the processor's image with an empty entrypoint; ``.build(app=)``: built
  before the Sandbox is created (its own step: its time is measured apart, and a failed build
  creates no Sandbox);
- ``Volume.from_name(name, create_if_missing=True)``, ``.listdir(path)``,
  ``.batch_upload(force=True)``, ``.read_only()``: the content-addressed blob volume;
- ``Secret.from_dict(...)``: the secret values, for the processor's process only;
- ``Sandbox.create(*idle, app=, image=, tags=, timeout=, workdir=, gpu=, cpu=(c, c),
  memory=(m, m), block_network=, volumes=)``, ``.exec(..., text=False)``, ``.poll()``,
  ``.terminate()``, ``Sandbox.list(tags=)``, ``.get_tags()``;
- ``ContainerProcess.stdout``/``.stderr`` (iterated as bytes) and ``.wait()``.

Errors: :class:`ModalNotInstalled` (the ``modal`` package is missing: it is the optional
``theoryx[modal]`` extra; checked first, with the seed's message :data:`NOT_INSTALLED_HINT`),
:class:`ModalCredentialsMissing` (no token: raised before ``modal`` is imported),
:class:`ModalAuthError`, :class:`ModalUnreachable` (connection trouble, including gRPC
"unavailable"/"deadline exceeded", which Modal raises as ``ServiceError``),
:class:`ImageBuildError`, :class:`ModalError` (anything else).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from theoryx.errors import (
    ImageBuildError,
    ModalAuthError,
    ModalCredentialsMissing,
    ModalError,
    ModalNotInstalled,
    ModalUnreachable,
    TheoryxError,
)

if TYPE_CHECKING:
    import modal
    from modal.container_process import ContainerProcess

NOT_INSTALLED_HINT = "Modal not available: install the 'modal' package (pip install 'theoryx[modal]')"
CREDENTIALS_HINT = "Modal credentials not configured: run `modal token new` or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET"


@dataclass(frozen=True)
class ImageRecipe:
    """How Modal gets the processor's image: a Dockerfile in a staged build context (exactly the
    files the image identity hashes, plus ``vendor/``) or a pinned registry reference, then the
    Dockerfile lines of ``extra_commands`` (see :func:`theoryx.adapters.modal.adapter.extra_commands`)
    and an empty entrypoint."""

    dockerfile: str | None = None
    context_dir: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    registry_ref: str | None = None
    force_build: bool = False
    extra_commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxRequest:
    """One Sandbox: its main process ``command`` (an idle loop: the processor runs through
    ``exec``), resources (request = limit), lifetime, network switch, working directory, Volume
    mounts (path -> (volume name, read-only)) and tags."""

    app_name: str
    image: ImageRecipe
    command: tuple[str, ...]
    cpu: float
    memory_mib: int
    gpu: str | None
    timeout_s: int
    block_network: bool
    workdir: str
    volumes: Mapping[str, tuple[str, bool]]
    tags: Mapping[str, str]


# -- credentials (no modal import) -------------------------------------------------------------


def config_path() -> Path:
    """Modal's config file: ``$MODAL_CONFIG_PATH``, else ``~/.modal.toml``."""
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")


def _profile_tokens(path: Path, chosen: str | None) -> dict[str, Any]:
    """The active profile of Modal's config file (``chosen``, else the one marked ``active``,
    else ``default``); empty when there is no readable file."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    name = chosen or next(
        (k for k, v in config.items() if isinstance(v, dict) and v.get("active") is True), "default")
    profile = config.get(name)
    return profile if isinstance(profile, dict) else {}


def require_modal() -> None:
    """:class:`ModalNotInstalled` unless the ``modal`` package is importable. The package is
    looked up, not imported (importing it takes a second)."""
    if importlib.util.find_spec("modal") is None:
        raise ModalNotInstalled(NOT_INSTALLED_HINT)


def _import_modal() -> Any:
    """The ``modal`` module; :class:`ModalNotInstalled` when it cannot be imported (so a missing
    extra always gets the same message, wherever the first import happens)."""
    try:
        import modal.exception  # binds ``modal``; translate() needs the submodule too
    except ImportError as exc:
        raise ModalNotInstalled(NOT_INSTALLED_HINT) from exc
    return modal


def token_configured(environ: Mapping[str, str], config: Path) -> bool:
    """Whether a token id and secret are configured: ``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET`` in
    ``environ``, completed by the active profile of the config file ``config`` (``MODAL_PROFILE``
    in ``environ``, else the profile marked ``active``, else ``default``). Reads one local file."""
    token_id, token_secret = environ.get("MODAL_TOKEN_ID"), environ.get("MODAL_TOKEN_SECRET")
    if not (token_id and token_secret):
        profile = _profile_tokens(config, environ.get("MODAL_PROFILE"))
        token_id = token_id or profile.get("token_id")
        token_secret = token_secret or profile.get("token_secret")
    return bool(token_id and token_secret)


def require_credentials() -> None:
    """:class:`ModalNotInstalled` without the ``modal`` package (checked first: without it no
    token can be used), else :class:`ModalCredentialsMissing` unless a token id and secret are
    configured (:func:`token_configured` over the environment and :func:`config_path`). Reads only
    local files: Modal is never contacted."""
    require_modal()
    if not token_configured(os.environ, config_path()):
        raise ModalCredentialsMissing(CREDENTIALS_HINT)


# -- exception mapping -------------------------------------------------------------------------


def translate(exc: BaseException, what: str) -> TheoryxError:
    """The theoryx error for an exception raised while doing ``what``. Exceptions raised inside
    the Sandbox never come here: the processor runs as a process, whose exit status is read."""
    if isinstance(exc, TheoryxError):     # before the import: it may be ModalNotInstalled itself
        return exc
    mx = _import_modal().exception
    text = (str(exc).strip() or type(exc).__name__).splitlines()[0][:500]
    if isinstance(exc, mx.AuthError):
        return ModalAuthError(f"Modal rejected the credentials while {what}: {text} "
                              "(run `modal token new`, or check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)")
    if isinstance(exc, mx.ImageBuildError):
        # all its lines: the SDK's message says how to see the build's log (`modal image logs <id>`)
        whole = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:1000] or text
        return ImageBuildError(f"Modal could not build the image while {what}: {whole}")
    # ServiceError is gRPC's "unavailable" / "deadline exceeded": the service, not the request
    if isinstance(exc, mx.ConnectionError | mx.ClientClosed | mx.ServiceError | mx.TimeoutError
                  | ConnectionError | TimeoutError):
        return ModalUnreachable(f"Modal is unreachable while {what}: {text}")
    if isinstance(exc, mx.NotFoundError):
        return ModalError(f"Modal found no such object while {what}: {text}")
    if isinstance(exc, mx.ResourceExhaustedError):
        return ModalError(f"Modal refused for lack of quota while {what}: {text}")
    if isinstance(exc, mx.InvalidError):
        return ModalError(f"Modal refused the request while {what}: {text}")
    return ModalError(f"Modal failed while {what}: {type(exc).__name__}: {text}")


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Translate the exceptions of the block (``what`` says what was being done); theoryx
    errors and ``BaseException``s such as ``KeyboardInterrupt`` pass through untouched."""
    try:
        yield
    except TheoryxError:
        raise
    except Exception as exc:
        raise translate(exc, what) from exc


# -- objects (cached per process: a batch of runs shares them) ---------------------------------

_lock = threading.Lock()
_apps: dict[str, modal.App] = {}
_volumes: dict[str, modal.Volume] = {}


def forget() -> None:
    """Drop the cached apps and volumes (tests swap the SDK's classes between runs)."""
    with _lock:
        _apps.clear()
        _volumes.clear()


def app(name: str) -> modal.App:
    """The deployed app ``name`` (created when missing)."""
    with _lock:
        found = _apps.get(name)
    if found is not None:
        return found
    _import_modal()
    import modal

    with mapped(f"looking up the Modal app {name}"):
        found = modal.App.lookup(name, create_if_missing=True)
    with _lock:
        return _apps.setdefault(name, found)


def volume(name: str) -> modal.Volume:
    """The persistent Volume ``name`` (created when missing; resolved lazily by Modal)."""
    with _lock:
        found = _volumes.get(name)
    if found is not None:
        return found
    _import_modal()
    import modal

    with mapped(f"opening the Modal volume {name}"):
        found = modal.Volume.from_name(name, create_if_missing=True)
    with _lock:
        return _volumes.setdefault(name, found)


def image(recipe: ImageRecipe) -> modal.Image:
    """The image of ``recipe`` (nothing is sent yet: Modal builds it when a Sandbox needs it)."""
    _import_modal()
    import modal

    with mapped("describing the image for Modal"):
        if recipe.registry_ref is not None:
            img = modal.Image.from_registry(recipe.registry_ref, force_build=recipe.force_build)
        else:
            if recipe.dockerfile is None or recipe.context_dir is None:
                raise ModalError("an image recipe needs a Dockerfile and its context, or a registry reference")
            img = modal.Image.from_dockerfile(
                recipe.dockerfile, context_dir=recipe.context_dir, build_args=dict(recipe.build_args),
                ignore=[], force_build=recipe.force_build)
        if recipe.extra_commands:
            img = img.dockerfile_commands(*recipe.extra_commands)
        return img.entrypoint([])


def secret(values: Mapping[str, str]) -> modal.Secret:
    """A ``modal.Secret`` holding ``values`` (built locally; sent with the exec that uses it)."""
    _import_modal()
    import modal

    env: dict[str, str | None] = dict(values)
    with mapped("preparing the secrets for Modal"):
        return modal.Secret.from_dict(env)


def build_image(req: SandboxRequest) -> modal.Image:
    """The image of ``req``, built by Modal in ``req``'s app now (``Image.build``; Modal returns
    its cached image when it has one), so that no build happens inside ``Sandbox.create``."""
    img = image(req.image)
    owner = app(req.app_name)
    with mapped(f"building it in the Modal app {req.app_name}"):
        return img.build(app=owner)


def create_sandbox(req: SandboxRequest, img: modal.Image | None = None) -> modal.Sandbox:
    """Create (and so schedule) the Sandbox of ``req`` with the image ``img`` (from
    :func:`build_image`; when None, ``req``'s image, which Modal then builds first if it has not
    yet)."""
    _import_modal()
    import modal

    mounts: dict[str | os.PathLike[str], modal.Volume | modal.CloudBucketMount] = {}
    for path, (name, read_only) in req.volumes.items():
        vol = volume(name)
        with mapped(f"mounting the Modal volume {name}"):
            mounts[path] = vol.read_only() if read_only else vol
    if img is None:
        img = image(req.image)
    owner = app(req.app_name)
    with mapped(f"creating a Modal Sandbox in app {req.app_name}"):
        return modal.Sandbox.create(
            *req.command, app=owner, image=img, tags=dict(req.tags), timeout=req.timeout_s,
            workdir=req.workdir, gpu=req.gpu, cpu=(req.cpu, req.cpu),
            memory=(req.memory_mib, req.memory_mib), block_network=req.block_network, volumes=mounts)


def exec_bytes(sb: modal.Sandbox, argv: Sequence[str], *, workdir: str | None = None,
               env: Mapping[str, str] | None = None, secrets: Sequence[modal.Secret] = (),
               timeout: int | None = None) -> ContainerProcess[bytes]:
    """Start ``argv`` in the Sandbox; its stdout and stderr are read as bytes."""
    environment: dict[str, str | None] | None = None if env is None else dict(env)
    with mapped(f"starting {argv[0]} in the Modal Sandbox"):
        return sb.exec(*argv, workdir=workdir, env=environment, secrets=list(secrets), timeout=timeout, text=False)


def wait(proc: ContainerProcess[bytes]) -> int:
    """The exit status of an exec'd process: its code, 128 + N for a signal N, -1 when Modal's
    exec deadline passed first."""
    with mapped("waiting for a process in the Modal Sandbox"):
        return proc.wait()


def chunks(stream: Any) -> Iterator[bytes]:
    """The chunks of an exec'd process's stdout or stderr (a ``StreamReader[bytes]``), as they
    come; ends with the stream."""
    with mapped("reading from the Modal Sandbox"):
        for chunk in stream:
            if isinstance(chunk, bytes | bytearray):
                yield bytes(chunk)


def poll(sb: modal.Sandbox) -> int | None:
    """None while the Sandbox runs, else its exit status (124 after its timeout, 137 when it was
    terminated: the SDK's own mapping)."""
    with mapped("asking Modal whether the Sandbox still runs"):
        return sb.poll()


def terminate(sb: modal.Sandbox) -> None:
    """End the Sandbox (a no-op for one that already ended)."""
    with mapped("terminating the Modal Sandbox"):
        sb.terminate()


def blob_size(vol: modal.Volume, path: str) -> int | None:
    """The size of the file at ``path`` in ``vol``, or None when there is none."""
    _import_modal()
    import modal.exception

    with mapped(f"looking for {path} in the Modal volume"):
        try:
            entries = vol.listdir(path)
        except modal.exception.NotFoundError:
            return None
    want = path.strip("/")
    for entry in entries:
        # FileEntryType moved from modal.volume to modal.types in 1.6: compared by name
        if entry.path.strip("/") == want and getattr(entry.type, "name", "") == "FILE":
            return int(entry.size)
    return None


def upload(vol: modal.Volume, files: Sequence[tuple[Path, str]]) -> None:
    """Upload ``(local file, path in the volume)`` pairs in one batch (committed together when
    the batch ends). Existing files are overwritten (``force``): every path names its content,
    so a concurrent upload of the same path writes the same bytes."""
    with mapped(f"uploading {len(files)} blob(s) to the Modal volume"), vol.batch_upload(force=True) as batch:
        for local, remote in files:
            batch.put_file(local, remote)


def tagged(tags: Mapping[str, str]) -> list[tuple[modal.Sandbox, dict[str, str]]]:
    """The running Sandboxes carrying at least ``tags``, each with all its tags."""
    _import_modal()
    import modal

    out: list[tuple[modal.Sandbox, dict[str, str]]] = []
    with mapped("listing theoryx's Sandboxes on Modal"):
        for sb in modal.Sandbox.list(tags=dict(tags)):
            out.append((sb, dict(sb.get_tags())))
    return out


__all__ = ["CREDENTIALS_HINT", "NOT_INSTALLED_HINT", "ImageRecipe", "SandboxRequest", "app", "blob_size",
           "build_image", "chunks", "create_sandbox", "exec_bytes", "forget", "image", "mapped", "poll",
           "require_credentials", "require_modal", "secret", "tagged", "terminate", "token_configured",
           "translate", "upload", "volume", "wait"]
