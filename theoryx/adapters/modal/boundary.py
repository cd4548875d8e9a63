"""The edge to Modal: every call into the ``modal`` client is in this module, and only here are
Modal's exceptions translated into theoryx errors (``raise X(msg) from exc``).

Keeping the edge this thin lets an offline fake of it (tests/modal/) run the real function body,
:mod:`theoryx.adapters.modal.runner`, on the host. A boundary is anything with the functions of
:class:`Boundary`; this module is the real one. ``modal`` is imported only inside
:func:`call`/:func:`call_stream`, after :func:`require_credentials` passed, so that importing
this module (and a run without credentials) costs nothing and never touches the network.

One call = one ephemeral Modal app (``app.run()``) named after the spec's
``adapter.modal.stub_name`` with one function: :func:`theoryx.adapters.modal.runner.run` (or the generator
``run_stream`` when logs are streamed) in the processor's image, with the spec's cpu, memory
(request = hard limit, so an overrun is OOM-killed as under Docker), GPU, network switch, a
timeout with a margin over the processor's own (the runner enforces the processor's) and a
bounded start-up time (together they bound what Modal can bill). The runner
module travels as a mount (the files in :data:`RUNNER_FILES` only). Secret
values reach the container only through ``modal.Secret.from_dict``, never through the payload.
Containers serve one input (``single_use_containers``) and get no access to the workspace's other
Modal resources (``restrict_modal_access``).

Errors: :class:`ModalNotInstalled` (the ``modal`` package is missing: it is the optional
``theoryx[modal]`` extra; checked first, with the seed's message :data:`NOT_INSTALLED_HINT`),
:class:`ModalCredentialsMissing` (no token: raised before ``modal`` is imported),
:class:`ModalAuthError`, :class:`ModalUnreachable`, :class:`ImageBuildError`,
:class:`ModalError` (anything else). When Modal kills the function for overrunning its timeout
(or, where its message says so, its memory) the call *returns* the runner's
:func:`~theoryx.adapters.modal.runner.killed_response`: that is an outcome of the processor, not an
infrastructure failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from theoryx.adapters.modal import runner as modal_runner
from theoryx.errors import (
    ImageBuildError,
    ModalAuthError,
    ModalCredentialsMissing,
    ModalError,
    ModalNotInstalled,
    ModalUnreachable,
    TheoryxError,
)

NOT_INSTALLED_HINT = "Modal not available. Install 'modal' package and set MODAL_ENABLED=True"
CREDENTIALS_HINT = "Modal credentials not configured: run `modal token new` or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET"
RUNNER_DIR = "/root/theoryx"
RUNNER_FILES = ("__init__.py", "errors.py", "adapters/__init__.py", "adapters/logs.py",
                "adapters/modal/__init__.py", "adapters/modal/runner.py")   # /root is on sys.path in Modal containers
_MAX_TIMEOUT_S = 24 * 3600
_OOM = re.compile(r"\bOOM|out of memory|memory limit", re.IGNORECASE)


@dataclass(frozen=True)
class ImageRecipe:
    """How Modal gets the processor's image: a Dockerfile in a staged build context (exactly
    the files the image identity hashes, plus ``vendor/``), or a pinned registry reference."""

    dockerfile: str | None = None
    context_dir: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    registry_ref: str | None = None
    force_build: bool = False


@dataclass(frozen=True)
class Call:
    """One remote execution. ``secrets`` (name -> value) are kept out of ``repr`` and go only
    into a ``modal.Secret``; ``payload`` is the runner's (see :mod:`theoryx.adapters.modal.runner`)."""

    app_name: str
    image: ImageRecipe
    cpu: float
    memory_mib: int
    gpu: str | None
    timeout_s: int
    block_network: bool
    payload: Mapping[str, Any]
    startup_timeout_s: int = 300
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


class Boundary(Protocol):
    """What the modal adapter needs from Modal: ``call`` returns the runner's response. A
    boundary may also offer ``call_stream(call) -> Iterator[tuple[str, Any]]``, yielding
    ``("stdout" | "stderr", bytes)`` chunks as they come, then ``("done", response)``; without
    it, ``--stream`` gets the logs once the call returned."""

    def require_credentials(self) -> None: ...

    def call(self, call: Call) -> dict[str, Any]: ...


# -- credentials (no modal import) -------------------------------------------------------------


def config_path() -> Path:
    """Modal's config file: ``$MODAL_CONFIG_PATH``, else ``~/.modal.toml``."""
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")


def _profile_tokens(path: Path) -> dict[str, Any]:
    """The active profile of Modal's config file (``$MODAL_PROFILE``, else the one marked
    ``active``, else ``default``); empty when there is no readable file."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    name = os.environ.get("MODAL_PROFILE") or next(
        (k for k, v in config.items() if isinstance(v, dict) and v.get("active") is True), "default")
    profile = config.get(name)
    return profile if isinstance(profile, dict) else {}


def require_modal() -> None:
    """:class:`ModalNotInstalled` unless the ``modal`` package is importable. The package is
    looked up, not imported (importing it takes a second)."""
    if importlib.util.find_spec("modal") is None:
        raise ModalNotInstalled(NOT_INSTALLED_HINT)


def _import_modal() -> Any:
    """The ``modal`` module; :class:`ModalNotInstalled` when it cannot be imported (the one
    place that imports it, so a missing extra always gets the same message)."""
    try:
        import modal.exception  # binds ``modal``; translate() needs the submodule too
    except ImportError as exc:
        raise ModalNotInstalled(NOT_INSTALLED_HINT) from exc
    return modal


def require_credentials() -> None:
    """:class:`ModalNotInstalled` without the ``modal`` package (checked first: without it no
    token can be used), else :class:`ModalCredentialsMissing` unless a token id and secret are
    configured (environment or Modal's config file). Reads only local files: Modal is never
    contacted."""
    require_modal()
    profile: dict[str, Any] = {}
    if not (os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET")):
        profile = _profile_tokens(config_path())
    token_id = os.environ.get("MODAL_TOKEN_ID") or profile.get("token_id")
    token_secret = os.environ.get("MODAL_TOKEN_SECRET") or profile.get("token_secret")
    if not (token_id and token_secret):
        raise ModalCredentialsMissing(CREDENTIALS_HINT)


# -- exception mapping -------------------------------------------------------------------------


def translate(exc: BaseException, what: str) -> TheoryxError | dict[str, Any]:
    """The theoryx error for a Modal exception raised while doing ``what``; or, when Modal
    killed the function (its timeout; its memory limit, judged by the message), the response
    reporting that outcome."""
    if isinstance(exc, TheoryxError):     # before the import: it may be ModalNotInstalled itself
        return exc
    mx = _import_modal().exception
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, mx.FunctionTimeoutError):
        return modal_runner.killed_response(
            timed_out=True, note=f"theoryx: Modal stopped the function at its timeout: {text}\n")
    if isinstance(exc, mx.AuthError):
        return ModalAuthError(f"Modal rejected the credentials while {what}: {text} "
                              "(run `modal token new`, or check MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)")
    if isinstance(exc, mx.ImageBuildError):
        return ImageBuildError(f"Modal could not build the image while {what}: {text}")
    if isinstance(exc, (mx.ConnectionError, mx.ClientClosed, ConnectionError, mx.TimeoutError)):
        return ModalUnreachable(f"Modal is unreachable while {what}: {text}")
    if isinstance(exc, (mx.ExecutionError, mx.RemoteError, mx.InternalFailure)) and _says_oom(text):
        return modal_runner.killed_response(
            oom_killed=True, note=f"theoryx: Modal killed the function for its memory: {text}\n")
    if isinstance(exc, mx.NotFoundError):
        return ModalError(f"Modal found no such object while {what}: {text}")
    return ModalError(f"Modal failed while {what}: {type(exc).__name__}: {text}")


def _says_oom(text: str) -> bool:
    return _OOM.search(text) is not None


# -- the calls ---------------------------------------------------------------------------------


def _image(recipe: ImageRecipe) -> Any:
    modal = _import_modal()
    if recipe.registry_ref is not None:
        image = modal.Image.from_registry(recipe.registry_ref, force_build=recipe.force_build)
    else:
        assert recipe.dockerfile is not None and recipe.context_dir is not None
        image = modal.Image.from_dockerfile(
            recipe.dockerfile, context_dir=recipe.context_dir, build_args=dict(recipe.build_args),
            ignore=[], force_build=recipe.force_build,
        )
    # The runner imports only the stdlib, but Modal imports it by its module name, so the
    # packages above it travel too (their __init__ modules import nothing heavy at import time).
    top = Path(modal_runner.__file__).parents[2]
    for rel in RUNNER_FILES:
        image = image.add_local_file(top / rel, f"{RUNNER_DIR}/{rel}")
    return image


def _function(call: Call, stream: bool) -> tuple[Any, Any]:
    """The ephemeral app and its one function (nothing is sent to Modal yet)."""
    modal = _import_modal()
    app = modal.App(call.app_name)
    options: dict[str, Any] = {
        "image": _image(call.image), "cpu": call.cpu, "memory": (call.memory_mib, call.memory_mib),
        "timeout": max(10, min(call.timeout_s, _MAX_TIMEOUT_S)), "startup_timeout": call.startup_timeout_s,
        "block_network": call.block_network,
        "secrets": [modal.Secret.from_dict(dict(call.secrets))] if call.secrets else [],
        "serialized": False, "include_source": False, "single_use_containers": True,
        "restrict_modal_access": True, "name": "run",
    }
    if call.gpu is not None:
        options["gpu"] = call.gpu
    body = modal_runner.run_stream if stream else modal_runner.run
    return app, app.function(**options)(body)


def call(call: Call) -> dict[str, Any]:
    """Run the runner remotely once and return its response."""
    require_credentials()
    what = f"running {call.app_name} on Modal"
    try:
        app, fn = _function(call, stream=False)
        with app.run():
            response: dict[str, Any] = fn.remote(dict(call.payload))
        return response
    except Exception as exc:
        mapped = translate(exc, what)
        if isinstance(mapped, dict):
            return mapped
        raise mapped from exc


def call_stream(call: Call) -> Iterator[tuple[str, Any]]:
    """Run the runner remotely as a generator: its chunks as they come, then ``("done", response)``."""
    require_credentials()
    what = f"running {call.app_name} on Modal"
    try:
        app, fn = _function(call, stream=True)
        with app.run():
            yield from fn.remote_gen(dict(call.payload))
    except Exception as exc:
        mapped = translate(exc, what)
        if isinstance(mapped, dict):
            yield ("done", mapped)
            return
        raise mapped from exc
