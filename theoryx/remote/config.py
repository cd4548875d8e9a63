"""Where the team cache is and what this client may do with it.

The URL comes from, first to last: the run's ``remote`` (``--remote URL``), ``THEORYX_REMOTE``,
the ``url`` of ``<home>/remote.json``. Everything else comes from that file::

    {
      "url": "https://cache.example.org/theoryx",     // or s3://bucket/prefix, gs://, az://, file:///
      "trusted_keys": ["alice.pub", "/etc/theoryx/ci.pub"],   // PEM public keys (relative: to the file)
      "upload": false,                                 // publish this client's results? (default no)
      "signing_key": "~/.config/theoryx/signing.key",  // ed25519 PEM private key used to sign
      "timeouts": {"connect_s": 2, "request_s": 10, "stall_s": 10, "transfer_s": 600, "retries": 1},
      "concurrency": 8                                 // parallel blob transfers
    }

Credentials are never part of the configuration: they come from the environment only, read
when the store is opened (``theoryx.remote.client``) and never printed, logged, stored or put
in an error message. :func:`credential_names` says which of them are set, by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from theoryx.errors import RemoteConfigError

TYPE_CHECKING = False  # typing stays unimported at run time (every local miss reads this module)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CONFIG_FILE = "remote.json"
ENV_URL = "THEORYX_REMOTE"
ENV_TOKEN = "THEORYX_REMOTE_TOKEN"
ENV_USER = "THEORYX_REMOTE_USER"
ENV_PASSWORD = "THEORYX_REMOTE_PASSWORD"

SCHEMES = ("http", "https", "s3", "gs", "az", "file")

CREDENTIAL_ENV: dict[str, tuple[str, ...]] = {
    "http": (ENV_TOKEN, ENV_USER, ENV_PASSWORD),
    "https": (ENV_TOKEN, ENV_USER, ENV_PASSWORD),
    "s3": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
    "gs": ("GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_SERVICE_ACCOUNT_KEY",
           "GOOGLE_APPLICATION_CREDENTIALS"),
    "az": ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_KEY",
           "AZURE_STORAGE_TOKEN", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"),
    "file": (),
}
"""Per scheme, the environment variables that carry credentials (by name only)."""


@dataclass(frozen=True)
class Timeouts:
    """Bounds on every remote operation, in seconds. obstore's own defaults (retries for up to
    three minutes, no stall detection) are never used.

    ``connect_s``: to establish a connection. ``request_s``: a whole request for a small object
    (an entry, a HEAD) including its retries. ``stall_s``: a blob transfer that receives nothing
    for this long is abandoned. ``transfer_s``: the longest one blob transfer may take.
    ``retries``: further attempts after a failed request (connection errors, 5xx, timeouts).
    """

    connect_s: float = 2.0
    request_s: float = 10.0
    stall_s: float = 10.0
    transfer_s: float = 600.0
    retries: int = 1

    @classmethod
    def from_json(cls, d: Any, where: str) -> Timeouts:
        if not isinstance(d, dict):
            raise RemoteConfigError(f"{where}: timeouts must be an object")
        unknown = sorted(set(d) - {"connect_s", "request_s", "stall_s", "transfer_s", "retries"})
        if unknown:
            raise RemoteConfigError(f"{where}: unknown timeouts key(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for k, v in d.items():
            if k == "retries":
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 5:
                    raise RemoteConfigError(f"{where}: timeouts.retries must be an integer from 0 to 5")
            elif not isinstance(v, int | float) or isinstance(v, bool) or not 0 < v <= 86400:
                raise RemoteConfigError(f"{where}: timeouts.{k} must be a number of seconds above 0, "
                                        "at most 86400 (a day)")
            values[k] = v
        return cls(**values)


@dataclass(frozen=True)
class RemoteConfig:
    """One client's view of the team cache. ``url`` never holds credentials (they are refused
    there) and has no trailing slash; ``source`` says where it came from."""

    url: str
    source: str
    trusted_keys: tuple[Path, ...] = ()
    upload: bool = False
    signing_key: Path | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    concurrency: int = 8
    config_file: Path | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    def credential_names(self, env: Mapping[str, str] | None = None) -> list[str]:
        """The credential variables of this scheme that are set (names only, never values)."""
        return credential_names(self.scheme, env)


def credential_names(scheme: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Which of ``scheme``'s credential variables are set in ``env`` (default: the process's)."""
    env = os.environ if env is None else env
    return [name for name in CREDENTIAL_ENV.get(scheme, ()) if env.get(name)]


def credentials_sent(scheme: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Which of the credential variables set for ``scheme`` the client actually sends (names
    only): for HTTP, ``THEORYX_REMOTE_TOKEN`` when it is set (basic auth is then ignored), else
    the basic-auth pair when both halves are set, else none; other schemes' SDKs use all of them."""
    env = os.environ if env is None else env
    names = credential_names(scheme, env)
    if scheme not in ("http", "https"):
        return names
    if env.get(ENV_TOKEN):
        return [ENV_TOKEN]
    return [n for n in names if n in (ENV_USER, ENV_PASSWORD)] if credential_problem(scheme, env) is None else []


def credential_problem(scheme: str, env: Mapping[str, str] | None = None) -> str | None:
    """Why the credential variables set for ``scheme`` send nothing, or None: for HTTP, basic
    auth needs both ``THEORYX_REMOTE_USER`` and ``THEORYX_REMOTE_PASSWORD`` (one alone, without
    ``THEORYX_REMOTE_TOKEN``, is ignored by the client). Names only, never values."""
    env = os.environ if env is None else env
    if scheme not in ("http", "https") or env.get(ENV_TOKEN):
        return None
    user, password = bool(env.get(ENV_USER)), bool(env.get(ENV_PASSWORD))
    if user != password:
        have, lack = (ENV_USER, ENV_PASSWORD) if user else (ENV_PASSWORD, ENV_USER)
        return f"{have} is set without {lack}: no credentials are sent (set both, or {ENV_TOKEN})"
    return None


def check_url(url: str, where: str) -> str:
    """``url`` normalised (no trailing slash) if theoryx can use it; else :class:`RemoteConfigError`.
    Credentials in the URL are refused, and the message then does not repeat the URL."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise RemoteConfigError(f"{where}: not a URL") from None
    if parts.scheme not in SCHEMES:
        raise RemoteConfigError(f"{where}: the remote URL's scheme must be one of {', '.join(SCHEMES)} "
                                f"(got {parts.scheme + '://' if parts.scheme else 'none'})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RemoteConfigError(f"{where}: the remote URL must not hold credentials; set {ENV_USER} and "
                                f"{ENV_PASSWORD}, or {ENV_TOKEN}, in the environment instead")
    if parts.query or parts.fragment:
        raise RemoteConfigError(f"{where}: the remote URL must have no query or fragment (tokens belong in "
                                "the environment)")
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        raise RemoteConfigError(f"{where}: a file remote names an absolute directory on this machine "
                                "(file:///path/to/dir)")
    if parts.scheme != "file" and not parts.netloc:
        raise RemoteConfigError(f"{where}: the remote URL names no host or bucket")
    return url.strip().rstrip("/")


_LOADED: dict[tuple[object, ...], RemoteConfig | None] = {}
_LOADED_MAX = 64


def load(home_root: Path, remote: str | None = None, env: Mapping[str, str] | None = None) -> RemoteConfig | None:
    """The team cache configuration for the home at ``home_root``, or None when no URL is set
    anywhere. ``remote`` is the run's own URL (``--remote``). Reads one small JSON file at most;
    raises :class:`RemoteConfigError` naming the setting at fault.

    Every local miss asks, so a result is remembered by everything it depends on — the file's
    bytes (read every time), ``remote``, the URL variable, the variables that locate ``~`` and
    the default signing key, and whether that key exists — and parsed again only when one of
    them changes."""
    env = os.environ if env is None else env
    path = os.path.join(home_root, CONFIG_FILE)
    text = _read_bytes(path)
    default_key = _default_key_fspath()
    key = (os.fspath(home_root), remote, env.get(ENV_URL), text, default_key, os.path.exists(default_key),
           os.environ.get("HOME"))
    try:
        return _LOADED[key]
    except KeyError:
        pass
    loaded = _parse(Path(home_root), Path(path), text, remote, env, Path(default_key))
    if len(_LOADED) >= _LOADED_MAX:
        _LOADED.clear()
    _LOADED[key] = loaded
    return loaded


def _parse(home_root: Path, path: Path, text: bytes | None, remote: str | None, env: Mapping[str, str],
           default_key: Path) -> RemoteConfig | None:
    """:func:`load` once the file is read (``text``: None when there is none)."""
    data = _decode(path, text)
    if remote:
        url, source = remote, "remote"
    elif env.get(ENV_URL):
        url, source = env[ENV_URL], ENV_URL
    elif data.get("url"):
        url, source = data["url"], str(path)
    else:
        return None
    if not isinstance(url, str):
        raise RemoteConfigError(f"{source}: url must be a string")
    url = check_url(url, source)
    where = str(path)
    unknown = sorted(set(data) - {"url", "trusted_keys", "upload", "signing_key", "timeouts", "concurrency"})
    if unknown:
        raise RemoteConfigError(f"{where}: unknown key(s): {', '.join(unknown)}")
    keys = data.get("trusted_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise RemoteConfigError(f"{where}: trusted_keys must be a list of paths to PEM public keys")
    upload = data.get("upload", False)
    if not isinstance(upload, bool):
        raise RemoteConfigError(f"{where}: upload must be true or false")
    signing = data.get("signing_key")
    if signing is not None and (not isinstance(signing, str) or not signing):
        raise RemoteConfigError(f"{where}: signing_key must be a path to an ed25519 PEM private key")
    concurrency = data.get("concurrency", 8)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 64:
        raise RemoteConfigError(f"{where}: concurrency must be an integer from 1 to 64")
    timeouts = Timeouts.from_json(data["timeouts"], where) if "timeouts" in data else Timeouts()
    return RemoteConfig(
        url=url, source=source, trusted_keys=tuple(_resolve(home_root, k) for k in keys), upload=upload,
        signing_key=_resolve(home_root, signing) if signing else (default_key if default_key.exists() else None),
        timeouts=timeouts, concurrency=concurrency, config_file=path if text is not None else None,
    )


MAX_CONFIG_BYTES = 1 << 20
"""A ``remote.json`` larger than this is refused unread (every local miss reads the file)."""


def _read_bytes(path: str) -> bytes | None:
    """The bytes of the file at ``path``, or None if there is none. It must be a regular file
    (a link to one is fine) of at most :data:`MAX_CONFIG_BYTES`: a FIFO or a device there is
    refused without blocking, since every local miss reads this file."""
    from theoryx.core.smallfiles import NotSmallRegularFile, read_regular

    try:
        return read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return None
    except NotSmallRegularFile as exc:
        raise RemoteConfigError(str(exc)) from None
    except OSError as exc:
        raise RemoteConfigError(f"cannot read {path}: {exc.strerror}") from None


def _decode(path: Path, text: bytes | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        data = json.loads(text.decode())
    except ValueError as exc:
        raise RemoteConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RemoteConfigError(f"{path} must hold a JSON object")
    return data


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def default_signing_key_path() -> Path:
    """``theoryx keygen``'s default key, ``$XDG_CONFIG_HOME/theoryx/signing.key`` (default
    ``~/.config/...``): :func:`theoryx.provenance.keys.default_path`, written out because that
    module imports cryptography (~11 ms) and every local miss reads this configuration, with or
    without a team cache (the tests check that both agree)."""
    return Path(_default_key_fspath())


def _default_key_fspath() -> str:
    """:func:`default_signing_key_path` as a string, without pathlib (looked up at every load)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "theoryx", "signing.key")

