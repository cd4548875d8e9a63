"""``theoryx ui``: serve a read-only web page over the home (:mod:`theoryx.ui`).

It listens on 127.0.0.1 (``--port``, default 8765; 0 picks a free port). ``--host`` serves on
another address, with a warning: whoever reaches it can read the home's runs, outputs and logs.
The first line on stdout is the page's URL (scripts and tests read it); Ctrl-C stops the server.
"""

from __future__ import annotations

import errno
import threading

import click

from theoryx.cli.state import State
from theoryx.errors import UiError, UsageError

DEFAULT_PORT = 8765


@click.command(name="ui")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default=None, metavar="ADDRESS",
              help="Listen on this IP address instead of 127.0.0.1 (a warning: the network can read the pages).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@click.pass_obj
def ui(state: State, port: int, host: str | None, open_browser: bool) -> None:
    """Serve a read-only web page over the home: runs, one run, plans, the store."""
    from theoryx.core import notices
    from theoryx.ui.server import LOOPBACK, is_loopback, make_server

    address = host if host is not None else LOOPBACK
    if host is not None:
        _check_host(host)
        if not is_loopback(host):
            notices.warning(f"theoryx ui listens on {host}, not only on this machine: anyone who can reach "
                            f"{host}:{port} can read this home's runs, inputs, outputs and logs (read-only)")
    stores = state.stores(create=False)     # it only reads: a misspelt --home is ERR_NO_HOME
    try:
        server = make_server(stores, host=address, port=port)
    except OSError as exc:
        why = ("the port is in use (choose another with --port, or --port 0 for any free one)"
               if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
        raise UiError(f"cannot listen on {address}:{port}: {why}") from None
    click.echo(server.url, nl=True)
    click.echo(f"Serving a read-only view of {stores.home.root} (Ctrl-C stops it).", err=True)
    if open_browser:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
    finally:
        server.server_close()


def _check_host(host: str) -> None:
    import ipaddress

    if host == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--host must be an IP address of this machine (e.g. 127.0.0.1, 0.0.0.0, ::1), "
                         f"not {host!r}") from None
