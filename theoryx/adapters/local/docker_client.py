"""The edge to the Docker engine: connecting, and mapping the SDK's exceptions.

Every call into the docker SDK goes through a client obtained from :func:`connect` and runs
inside :func:`mapped`, which turns ``docker.errors.*``, ``requests.exceptions.*`` and socket
errors into theoryx errors (``raise X(msg) from exc``). The SDK is untyped: clients are ``Any``.

``docker`` is imported only inside these functions, so importing this module (or anything that
imports it) costs nothing on a cache hit.

Errors:

- :class:`DockerUnavailable` — no socket, nothing answering within :data:`CONNECT_TIMEOUT_S`,
  or the connection dropped mid-call;
- :class:`ImageNotFound` — an image that must already exist locally does not (never pulled);
- :class:`AdapterError` — any other engine error, naming what theoryx was doing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from theoryx.errors import AdapterError, DockerUnavailable, ImageNotFound, TheoryxError

CONNECT_TIMEOUT_S = 1.0      # the first request (API version) doubles as the liveness probe
CALL_TIMEOUT_S = 120.0       # later requests (create, inspect, remove, build stream reads)
DEFAULT_SOCKET = "/var/run/docker.sock"
UNAVAILABLE = "Docker daemon not running or not installed"
HINT = "start it (bash scripts/docker-up.sh), or run without Docker: adapter='mock'"


def socket_path(environ: dict[str, str] | None = None) -> str | None:
    """The unix socket the client will use, or None for a non-unix ``DOCKER_HOST``."""
    host = (environ if environ is not None else os.environ).get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    for scheme in ("unix://", "http+unix://"):
        if host.startswith(scheme):
            return host[len(scheme):] or DEFAULT_SOCKET
    return None


def unavailable(detail: str) -> DockerUnavailable:
    """The error every "no engine" path raises: the fixed message, the detail, the hint."""
    return DockerUnavailable(f"{UNAVAILABLE} ({detail})\nHint: {HINT}", option="adapter")


def connect(timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A connected ``docker.DockerClient``; :class:`DockerUnavailable` within ~``timeout`` s.

    A missing unix socket fails before the SDK is even imported.
    """
    path = socket_path()
    if path is not None and not os.path.exists(path):
        raise unavailable(f"no socket at {path}")
    try:
        import docker
    except ImportError as exc:
        raise unavailable("the docker Python package is not installed") from exc
    try:
        client = docker.from_env(version="auto", timeout=timeout)
    except Exception as exc:  # the SDK wraps every connection failure differently
        raise unavailable(f"cannot reach {os.environ.get('DOCKER_HOST') or path}: {_first_line(exc)}") from exc
    client.api.timeout = CALL_TIMEOUT_S
    return client


@contextlib.contextmanager
def mapped(what: str, not_found: type[TheoryxError] = AdapterError) -> Iterator[None]:
    """Translate SDK/transport exceptions raised in the block; ``what`` says what was being done.

    ``not_found`` is raised for the engine's 404s (e.g. :class:`ImageNotFound`). theoryx errors
    and ``BaseException``s such as ``KeyboardInterrupt`` pass through untouched.
    """
    try:
        yield
    except TheoryxError:
        raise
    except Exception as exc:
        raise translate(exc, what, not_found) from exc


def translate(exc: Exception, what: str, not_found: type[TheoryxError] = AdapterError) -> TheoryxError:
    """The theoryx error for a foreign exception raised while doing ``what``."""
    import docker.errors
    import requests.exceptions

    if isinstance(exc, docker.errors.NotFound | docker.errors.ImageNotFound):
        return not_found(f"{what}: {explanation(exc)}")
    if isinstance(exc, docker.errors.APIError):
        return AdapterError(f"Docker engine error while {what}: {explanation(exc)}")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return unavailable(f"connection lost while {what}: {_first_line(exc)}")
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return AdapterError(f"Docker engine did not answer in time while {what}")
    if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException | OSError):
        return AdapterError(f"Docker error while {what}: {_first_line(exc)}")
    return AdapterError(f"unexpected error while {what}: {type(exc).__name__}: {_first_line(exc)}")


def is_timeout(exc: BaseException) -> bool:
    """True for what ``wait(timeout=)`` raises when the timeout expires: a read timeout, or (over
    the unix socket) a ``ConnectionError`` wrapping one."""
    import requests.exceptions

    return isinstance(exc, requests.exceptions.ReadTimeout | requests.exceptions.ConnectionError | TimeoutError)


def is_conflict(exc: BaseException) -> bool:
    """True for the engine's 409 (e.g. killing a container that already stopped)."""
    import docker.errors

    return isinstance(exc, docker.errors.APIError) and exc.status_code == 409


def is_missing(exc: BaseException) -> bool:
    """True for the engine's 404 (no such container or image)."""
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


def find_image(client: Any, name: str) -> Any | None:
    """The local image ``name`` (a tag, id or ``repo@sha256:`` digest), or None; never pulls."""
    import docker.errors

    with mapped(f"inspecting image {name}"):
        try:
            return client.images.get(name)
        except docker.errors.ImageNotFound:
            return None


def require_image(client: Any, name: str, fix: str) -> Any:
    """The local image ``name``, or :class:`ImageNotFound` ending with the command ``fix``."""
    image = find_image(client, name)
    if image is None:
        raise ImageNotFound(f"image {name} is not present locally and theoryx never pulls images; {fix}")
    return image


def explanation(exc: Any) -> str:
    """The engine's one-line reason for ``exc`` (its explanation, else its text)."""
    text = getattr(exc, "explanation", None) or str(exc)
    return _first_line(text)



def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:500] if text else type(value).__name__


class Attached:
    """A container's stdin, stdout and stderr over one attach connection (no TTY), opened by
    :func:`attach_stdio`. ``send`` writes to the container's stdin; ``frames`` yields
    ``("stdout" | "stderr", bytes)`` until the container's streams end (or :meth:`close`);
    ``close`` drops the connection, which (the container being created with ``StdinOnce``) ends
    the container's stdin: a worker whose theoryx is gone sees end-of-file."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._sock: Any = getattr(response, "_sock", response)
        self._sock.settimeout(None)      # the reader blocks until data or end; close() wakes it
        self._closed = False

    def send(self, data: bytes) -> None:
        """Write ``data`` to the container's stdin; ``OSError`` when the connection is gone."""
        self._sock.sendall(data)

    def frames(self) -> Iterator[tuple[str, bytes]]:
        """The container's output frames in arrival order; ends at end-of-stream or on a
        connection error (the container is gone either way)."""
        from docker.utils import socket as docker_socket

        try:
            for stream, data in docker_socket.frames_iter(self._response, tty=False):
                if data:
                    yield ("stderr" if stream == 2 else "stdout", bytes(data))
        except (OSError, ValueError):   # ValueError: read on a closed file
            return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        import socket

        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._response.close()
        with contextlib.suppress(OSError):
            self._sock.close()


def attach_stdio(client: Any, container_id: str) -> Attached:
    """Attach to a created (not yet started) container's stdin, stdout and stderr."""
    with mapped("attaching to the worker container"):
        response = client.api.attach_socket(container_id,
                                            params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    return Attached(response)
