"""The ``theoryx ui`` command: its URL line, loopback by default, ``--host`` with a warning, a
clear error for a busy port, Ctrl-C (issue 14)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from ui_testing import REPO, Server, request, start_cli_server, stop


def test_it_listens_on_loopback_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    server = start_cli_server(tmp_path / "home", tmp_path)
    assert server.url.startswith("http://127.0.0.1:")
    assert request(server, "/runs").status == 200
    assert server.process is not None
    server.process.send_signal(signal.SIGINT)
    _, err = server.process.communicate(timeout=15)
    assert server.process.returncode == 0, err
    assert "Stopped." in err and "Traceback" not in err and "read-only view" in err


def test_another_host_is_served_only_on_request_and_with_a_warning(tmp_path: Path) -> None:
    server = start_cli_server(tmp_path / "home", tmp_path, "--host", "0.0.0.0")
    try:
        assert server.url.startswith("http://0.0.0.0:")
        local = Server(None, f"http://127.0.0.1:{server.port}/")
        assert request(local, "/store").status == 200
    finally:
        err = stop(server)
    assert "Warning: theoryx ui listens on 0.0.0.0, not only on this machine" in err


def run_ui(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from theoryx.store.handle import open_stores

    open_stores(tmp_path / "home")          # a home to read
    return subprocess.run([sys.executable, "-m", "theoryx", "--home", str(tmp_path / "home"), "ui", *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO)


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_ui(tmp_path, "--port", str(port))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == (f"Error: cannot listen on 127.0.0.1:{port}: the port is in use (choose another "
                                   "with --port, or --port 0 for any free one)")


def test_a_host_that_is_not_an_address_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_ui(tmp_path, "--host", "example.com")
    assert proc.returncode == 2 and "--host must be an IP address" in proc.stderr and "Traceback" not in proc.stderr


def reset(server: Server, data: bytes) -> None:
    """Send ``data``, then abort the connection (RST: SO_LINGER 0), as a browser cancelling a
    request does."""
    import struct
    import time

    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.sendall(data)
        time.sleep(0.05)


def test_a_client_that_resets_its_connection_prints_no_traceback(tmp_path: Path) -> None:
    """Connections reset mid-request (and right after one) are dropped quietly: the server keeps
    answering and prints no traceback (socketserver's default printed one per reset to stderr)."""
    server = start_cli_server(tmp_path / "home", tmp_path)
    try:
        host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
        for _ in range(3):
            reset(server, b"GET /runs HT")
            reset(server, b"GET /runs HTTP/1.1\r\n" + host + b"\r\n")
            reset(server, b"GET /store HTTP/1.1\r\n" + host + b"\r\n")
        assert request(server, "/runs").status == 200
    finally:
        err = stop(server)
    assert "Traceback" not in err and "Exception occurred" not in err, err
