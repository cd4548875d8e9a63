"""ed25519 signing keys for receipts: generate, write, load, and name them.

A private key is an unencrypted PKCS#8 PEM file of mode 0600; its public key sits beside it as
``<file>.pub`` (SubjectPublicKeyInfo PEM). A key's id is the hex SHA-256 of its 32 raw public
bytes. The default key lives in ``$XDG_CONFIG_HOME/theoryx/signing.key`` (not in the cache
directory, which may be deleted at any time).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from theoryx.errors import SigningKeyError, UsageError


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/theoryx/signing.key`` (default ``~/.config/...``)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "theoryx" / "signing.key"


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def keyid(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte (never readable by others meanwhile)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.chmod(path, mode)  # the umask may have narrowed it


def generate(path: Path, *, force: bool = False) -> str:
    """Write a new private key to ``path`` (0600) and its public key to ``path.pub``; return the
    key id. :class:`UsageError` if either exists and ``force`` is not given."""
    pub_path = public_path(path)
    existing = [p for p in (path, pub_path) if p.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; refusing to overwrite a key (use force=True)", option="force")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for p in existing:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    _write_new(path, private_pem, 0o600)
    _write_new(pub_path, public_pem, 0o644)
    return keyid(key.public_key())


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    """An ed25519 private key from a PEM file; :class:`SigningKeyError` otherwise."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file (a private key file gives its public half)."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    return key
