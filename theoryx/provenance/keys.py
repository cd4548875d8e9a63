"""ed25519 signing keys for receipts: generate, write, load, and name them.

A private key is an unencrypted PKCS#8 PEM file of mode 0600; its public key sits beside it as
``<file>.pub`` (SubjectPublicKeyInfo PEM). A key's id is the hex SHA-256 of its 32 raw public
bytes. The default key lives in ``$XDG_CONFIG_HOME/theoryx/signing.key`` (not in the cache
directory, which may be deleted at any time).

Reading a key is cheap where it can be (a remote hit reads the trusted keys): a PEM file holding
exactly an ed25519 ``SubjectPublicKeyInfo`` (what :func:`generate` writes as ``<key>.pub``) or an
unencrypted PKCS#8 v1 ed25519 private key is decoded here, its DER compared byte for byte with
the only encoding RFC 8410 allows for the 32-byte key (:func:`raw_public_key`); every other file
goes through cryptography's full PEM parser (``serialization``: ~10 ms to import, imported only
then), which says what is wrong with it. Public keys are remembered by the bytes of their file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from theoryx.errors import SigningKeyError, UsageError

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an ed25519 SubjectPublicKeyInfo up to its 32 key bytes (RFC 8410, section 4)."""
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
"""DER of an ed25519 PKCS#8 v1 private key up to its 32-byte seed (RFC 8410, section 7)."""
_REMEMBERED = 64


def default_path() -> Path:
    """``$XDG_CONFIG_HOME/theoryx/signing.key`` (default ``~/.config/...``); :class:`UsageError`
    when the ``~`` it needs cannot be expanded (no such user; no ``HOME`` and no password entry)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    try:
        base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    except RuntimeError:        # "Could not determine home directory."
        raise UsageError(f"no home directory to put the default signing key under "
                         f"({(xdg or '~/.config')[:200]}/theoryx/signing.key): set XDG_CONFIG_HOME or name "
                         "the key file") from None
    return base / "theoryx" / "signing.key"


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


_KEYIDS: dict[bytes, str] = {}


def keyid(key: Ed25519PublicKey) -> str:
    """The key's id: the hex SHA-256 of its 32 raw public bytes."""
    raw = key.public_bytes_raw()
    found = _KEYIDS.get(raw)
    if found is not None:
        return found
    from cryptography.hazmat.primitives import hashes  # loaded with ed25519 already; hashlib is not

    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    kid = digest.finalize().hex()
    if len(_KEYIDS) >= _REMEMBERED:
        _KEYIDS.clear()
    _KEYIDS[raw] = kid
    return kid


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


@contextlib.contextmanager
def _dir_locked(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` itself while the block runs (nothing is created), so
    that two key generations in one folder take turns; best effort where a filesystem has no
    such lock."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:         # a folder we may write in but not read: no lock, as before
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)        # drops the lock


def _refuse_existing(path: Path, pub_path: Path, force: bool) -> None:
    existing = [p for p in (path, pub_path) if os.path.lexists(p)]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists; refusing to overwrite a key (use force=True)", option="force")


def generate(path: Path, *, force: bool = False) -> str:
    """Write a new private key to ``path`` (0600) and its public key to ``path.pub``; return the
    key id. :class:`UsageError` if either exists and ``force`` is not given, or is a directory.
    Both files are written beside their targets first and renamed into place only once both
    are complete, so a failure (no space, a bad path) leaves any old key pair as it was;
    :class:`SigningKeyError` names what could not be written. Generations of the same key
    take turns (a lock on its folder): of two at once without ``force`` one is refused, and
    two with ``force`` never leave one's private key beside the other's public key."""
    pub_path = public_path(path)
    _refuse_existing(path, pub_path, force)
    for p in (path, pub_path):
        if p.is_dir():
            raise UsageError(f"{p} is a directory; a key file goes there")
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    written: list[tuple[Path, Path]] = []
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:     # mkdir's word for a file where the folder belongs
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        with _dir_locked(path.parent):
            _refuse_existing(path, pub_path, force)     # again: another may have made it meanwhile
            for target, data, mode in ((path, private_pem, 0o600), (pub_path, public_pem, 0o644)):
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
                _write_new(tmp, data, mode)
                written.append((tmp, target))
            for tmp, target in written:
                os.replace(tmp, target)
    except OSError as exc:
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise SigningKeyError(f"cannot write the key pair {path}: {exc.strerror or exc}") from None
    return keyid(key.public_key())


MAX_KEY_BYTES = 64 << 10
"""A key file larger than this is refused unread (a PEM ed25519 key is a few hundred bytes)."""


def _read(path: Path) -> bytes:
    """A key file's bytes: a regular file (a link to one is fine) of at most
    :data:`MAX_KEY_BYTES`; a FIFO or a device in its place is refused without blocking (a
    remote hit reads the trusted keys, an upload the signing key)."""
    from theoryx.core.smallfiles import NotSmallRegularFile, read_regular

    try:
        return read_regular(path, MAX_KEY_BYTES)
    except NotSmallRegularFile as exc:
        raise SigningKeyError(f"cannot read key file: {exc}") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from None


def load_private(path: Path) -> Ed25519PrivateKey:
    """An ed25519 private key from a PEM file; :class:`SigningKeyError` otherwise."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
    return key


def _pem_body(data: bytes, label: bytes) -> bytes | None:
    """The DER inside ``data`` if it is exactly one PEM block labelled ``label`` in canonical
    base64; None for anything else (then the full parser decides)."""
    lines = data.strip().splitlines()
    if len(lines) < 3 or lines[0] != b"-----BEGIN " + label + b"-----" or lines[-1] != b"-----END " + label + b"-----":
        return None
    body = b"".join(lines[1:-1])
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if base64.b64encode(der) == body else None


def raw_public_key(data: bytes) -> bytes | None:
    """The 32 raw bytes of the ed25519 public key in PEM ``data`` (its own, or a private key's
    public half), when ``data`` is in one of the two fixed encodings; None otherwise."""
    der = _pem_body(data, b"PUBLIC KEY")
    if der is not None:
        return der[len(SPKI_PREFIX):] if len(der) == len(SPKI_PREFIX) + 32 and der.startswith(SPKI_PREFIX) else None
    der = _pem_body(data, b"PRIVATE KEY")
    if der is not None and len(der) == len(PKCS8_PREFIX) + 32 and der.startswith(PKCS8_PREFIX):
        return Ed25519PrivateKey.from_private_bytes(der[len(PKCS8_PREFIX):]).public_key().public_bytes_raw()
    return None


_PUBLIC: dict[bytes, Ed25519PublicKey] = {}
"""Public keys already decoded, by the bytes of their PEM file (a file is read at every call;
its key is decoded again only when those bytes change)."""


def load_public(path: Path) -> Ed25519PublicKey:
    """An ed25519 public key from a PEM file (a private key file gives its public half);
    :class:`SigningKeyError` if there is none."""
    data = _read(path)
    key = _PUBLIC.get(data)
    if key is not None:
        return key
    raw = raw_public_key(data)
    if raw is not None:
        key = Ed25519PublicKey.from_public_bytes(raw)
    elif b"PRIVATE KEY" in data:
        key = load_private(path).public_key()
    else:
        from cryptography.hazmat.primitives import serialization

        try:
            parsed = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path} is not a PEM public key: {exc}") from None
        if not isinstance(parsed, Ed25519PublicKey):
            raise SigningKeyError(f"{path} holds a {type(parsed).__name__}, not an ed25519 key")
        key = parsed
    if len(_PUBLIC) >= _REMEMBERED:
        _PUBLIC.clear()
    _PUBLIC[data] = key
    return key
