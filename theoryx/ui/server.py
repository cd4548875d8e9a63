"""The HTTP server of ``theoryx ui``: the standard library's ``ThreadingHTTPServer``.

Why no web framework: the pages are GET-only views of a local store; ``http.server`` gives
threads per connection and nothing more is needed, so no dependency is added.

Contract:

- it listens on 127.0.0.1 unless :func:`serve` is given another host (the CLI's ``--host``
  flag, with a warning notice);
- GET and HEAD are answered by :class:`theoryx.ui.routes.App`; every other method gets 405 with
  ``Allow: GET, HEAD``, and nothing on any page can change the store;
- requests whose ``Host`` header names another server get 421 (a page of another origin that
  resolves its name to 127.0.0.1 cannot read this one: DNS rebinding); two ``Host`` headers, or
  none in a request newer than HTTP/1.0, are a 400 (RFC 9112 3.2);
- a blob is streamed through :meth:`cas.Store.open_verified` with its ``Content-Length``; if its
  bytes turn out not to match their cid at the end, the connection is closed before the body is
  complete, so the client sees a failed download, never a silently corrupt one;
- nothing is printed: failures go to :mod:`theoryx.core.notices` (the CLI shows them).
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cas import CasError
from theoryx import __version__
from theoryx.core import notices
from theoryx.store.handle import Stores
from theoryx.ui.routes import App, Response

LOOPBACK = "127.0.0.1"
ALLOWED_METHODS = "GET, HEAD"
REQUEST_TIMEOUT_S = 30.0
"""A connection idle this long is closed (a slow client cannot hold a thread forever)."""
CHUNK = 1 << 16


class Handler(BaseHTTPRequestHandler):
    """One connection. ``server.app`` answers; this class speaks HTTP."""

    server: UiServer
    server_version = f"theoryx-ui/{__version__}"
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S

    def version_string(self) -> str:
        return self.server_version   # not the Python version

    def do_GET(self) -> None:   # http.server dispatches on do_<METHOD>
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>: every method but GET and HEAD is refused the same way.
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def _refuse(self) -> None:
        response = self.server.app.error(405, "Method not allowed",
                                         "this page is read-only: only GET and HEAD are answered")
        self.close_connection = True   # any request body is left unread
        self._send(response, head=False, extra=(("Allow", ALLOWED_METHODS),))

    def _answer(self, *, head: bool) -> None:
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1 or (not hosts and self.request_version != "HTTP/1.0"):
            response = self.server.app.error(400, "Bad request", "a request names its host in exactly one Host "
                                                                  "header (HTTP/1.0 may omit it)")
        else:
            response = self.server.app.handle(self.path, hosts[0] if hosts else None)
        self._send(response, head=head)

    def _send(self, response: Response, *, head: bool, extra: tuple[tuple[str, str], ...] = ()) -> None:
        length = len(response.body) if response.cid is None else response.length or 0
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in (*response.headers, *extra):
            self.send_header(name, value)
        if response.status >= 400 and response.status != 404:
            self.close_connection = True
        self.end_headers()
        if head:
            return
        if response.cid is None:
            self.wfile.write(response.body)
            return
        self._stream(response.cid)

    def _stream(self, cid: str) -> None:
        try:
            with self.server.app.stores.cas.open_verified(cid) as src:
                shutil.copyfileobj(src, self.wfile, CHUNK)
        except CasError as exc:   # gone or corrupt after the headers: cut the body short
            self.close_connection = True
            notices.warning(f"theoryx ui: blob {cid} could not be sent whole ({type(exc).__name__}); "
                            "the download was cut short")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def parse_request(self) -> bool:
        """As http.server's, but an HTTP/0.9 request (a bare ``GET /path``) is refused with a
        400: its answer would carry no headers at all (no Content-Type, CSP or ``nosniff``), so a
        blob would go out unlabelled."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "HTTP/0.9 requests are not answered: send HTTP/1.0 or HTTP/1.1")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, a header too long...) as our page,
        always with a status line and headers (http.server takes a request it could not parse for
        HTTP/0.9, whose answers have neither)."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            response = self.server.app.error(code, "Bad request" if code < 500 else "Error",
                                             message or "the request could not be understood")
            self._send(response, head=self.command == "HEAD")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the library never prints (errors are reported as notices)."""


class UiServer(ThreadingHTTPServer):
    """The server with its :class:`App`; threads are daemons (Ctrl-C stops the process)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)
        self.app = app

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside :class:`App` (socketserver's default prints a traceback
        on stderr): a client that reset or dropped its connection is forgotten quietly, anything
        else is a warning notice without a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        notices.warning(f"theoryx ui: a request from {client_address[0]} failed: {exc!r}")

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


ANY_IP = "*"
"""In :func:`allowed_hosts`: any IP address literal (with the port) is answered too."""


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values this server answers, with the port: its address and loopback
    names; for an unspecified address such as ``0.0.0.0`` (every interface, whose addresses may
    change) any IP address literal (:data:`ANY_IP`), ``localhost`` and this machine's own names.
    A name some other domain resolves to this machine is never among them (DNS rebinding)."""
    import socket

    try:
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified:
        names = {ANY_IP, "localhost", socket.gethostname(), socket.getfqdn()}
    elif is_loopback(host):
        names = {host, "127.0.0.1", "localhost", "[::1]"}
    else:
        names = {host}
    names = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset(f"{n}:{port}".lower() for n in names)


def make_server(stores: Stores, *, host: str = LOOPBACK, port: int = 0) -> UiServer:
    """Bind (``port`` 0: any free port) and return the server, not yet serving. The caller
    warns about a host that is not loopback; ``OSError`` when the address cannot be bound."""
    app = App(stores)
    server = UiServer((host, port), app)
    app.allowed_hosts = allowed_hosts(host, server.server_address[1])
    return server
