"""A real nginx with WebDAV on a free 127.0.0.1 port, for the team cache's tests and benchmark.

Two locations serve one directory tree (``root/cache/``): ``/cache/`` takes GET/HEAD from anyone
and PUT/DELETE/MKCOL only with HTTP basic auth (the *writer* location), ``/ro/`` answers GET and
HEAD only (the *read-only* location: every other method is 403). nginx writes a PUT's body to a
temp file and renames it into place when the body is complete, so an interrupted upload leaves
nothing at the target path.

Nothing is installed here: nginx comes from the operating system's packages (``nginx``,
``libnginx-mod-http-dav-ext``, ``apache2-utils``; ``scripts/nginx-up.sh`` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
DAV_EXT = Path("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so")
USER = "writer"
PASSWORD = "s3cret-team-password"  # the test's own; tests check that no error text ever shows it

CONFIG = """\
{load_module}
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
daemon on;
events {{}}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  client_max_body_size 0;
  sendfile on;
  server {{
    listen 127.0.0.1:{port};
    root {dir}/root;
    location /cache/ {{
      dav_methods PUT DELETE MKCOL COPY MOVE;
      {dav_ext}
      dav_access user:rw group:r all:r;
      create_full_put_path on;
      limit_except GET HEAD PROPFIND OPTIONS {{
        auth_basic "writers";
        auth_basic_user_file {dir}/htpasswd;
      }}
    }}
    location /ro/ {{
      alias {dir}/root/cache/;
      limit_except GET {{ deny all; }}
    }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """None if nginx can run here, else why not."""
    if NGINX is None:
        return "nginx is not installed (scripts/nginx-up.sh installs it)"
    if shutil.which("htpasswd") is None:
        return "htpasswd is not installed (apache2-utils; scripts/nginx-up.sh installs it)"
    return None


@dataclass
class Nginx:
    """One nginx instance under ``dir`` (its config, logs, temp files and the served ``root/``)."""

    dir: Path
    port: int = field(default_factory=free_port)

    @property
    def root(self) -> Path:
        """The directory the server's ``/cache/`` and ``/ro/`` locations serve."""
        return self.dir / "root" / "cache"

    @property
    def url(self) -> str:
        """The writer location (GET/HEAD for all, PUT with basic auth)."""
        return f"http://127.0.0.1:{self.port}/cache/"

    @property
    def ro_url(self) -> str:
        """The read-only location (GET/HEAD only)."""
        return f"http://127.0.0.1:{self.port}/ro/"

    def start(self) -> None:
        """Write the config and start nginx (daemonised; its pid in ``nginx.pid``); wait until it
        accepts connections. Raises ``RuntimeError`` with nginx's own message if it cannot run."""
        reason = available()
        if reason:
            raise RuntimeError(reason)
        for sub in ("tmp", "root/cache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        # The worker runs as an unprivileged user when the master is root: let it write.
        for p in (self.dir, self.dir / "tmp", self.dir / "root", self.root):
            os.chmod(p, 0o777)
        pw = subprocess.run(["htpasswd", "-nbB", USER, PASSWORD], capture_output=True, text=True, check=True)
        (self.dir / "htpasswd").write_text(pw.stdout)
        os.chmod(self.dir / "htpasswd", 0o644)
        has_ext = DAV_EXT.exists()
        # As root, nginx's workers would run as `nobody`, who cannot enter pytest's 0700 temp
        # directories: keep them as the user who owns the files.
        user = "user root root;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(CONFIG.format(
            dir=self.dir, port=self.port, user=user,
            load_module=f"load_module {DAV_EXT};" if has_ext else "",
            dav_ext="dav_ext_methods PROPFIND OPTIONS;" if has_ext else "",
        ))
        self._run_nginx()
        self._wait(up=True)

    def _run_nginx(self) -> None:
        assert NGINX is not None
        proc = subprocess.run([NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir), "-e",
                               str(self.dir / "error.log")], capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"nginx did not start: {proc.stderr.strip() or proc.stdout.strip()}")

    def pid(self) -> int | None:
        try:
            return int((self.dir / "nginx.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop nginx at once (SIGTERM: in-flight requests are cut) and wait until the port is closed."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self._wait(up=False)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "nginx.pid").unlink()

    def restart(self) -> None:
        """Start the same server again (same port, same files)."""
        self._run_nginx()
        self._wait(up=True)

    def _wait(self, *, up: bool) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    if up:
                        return
            except OSError:
                if not up:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"nginx on port {self.port} did not {'start' if up else 'stop'} in 10 s")
