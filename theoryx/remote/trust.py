"""The keys a team cache client trusts, and the check of a signed entry against them.

Imported only once the remote answered with an entry: loading ``cryptography`` costs ~10 ms, a
remote miss (a 404) never pays it. Keys are read the cheapest correct way: a PEM file holding
exactly an ed25519 ``SubjectPublicKeyInfo`` (what ``theoryx keygen`` writes as ``<key>.pub``)
or an unencrypted PKCS#8 v1 ed25519 private key (``theoryx keygen``'s key file) is decoded here,
its DER compared byte for byte with the only encoding RFC 8410 allows for the 32-byte key, and
handed to ``Ed25519PublicKey.from_public_bytes``; every other file goes through cryptography's
full PEM parser (:func:`theoryx.provenance.keys.load_public`), which costs another ~10 ms to
import and says what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from theoryx.core.b64 import Base64Error, canonical_b64decode
from theoryx.errors import RemoteConfigError, RemoteRejected, SigningKeyError
from theoryx.remote.layout import standard_b64decode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from theoryx.remote.config import RemoteConfig

SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
"""DER of an ed25519 SubjectPublicKeyInfo up to its 32 key bytes (RFC 8410, section 4)."""
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
"""DER of an ed25519 PKCS#8 v1 private key up to its 32-byte seed (RFC 8410, section 7)."""


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
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(der[len(PKCS8_PREFIX):]).public_key().public_bytes_raw()
    return None


_PARSED: dict[bytes, Ed25519PublicKey] = {}
"""Keys already decoded, by the bytes of their PEM file (a file is read at every lookup; its
key is decoded again only when those bytes change). Bounded by :data:`_PARSED_MAX`."""
_PARSED_MAX = 64


def load_public(path: Path) -> Ed25519PublicKey:
    """The ed25519 public key in the PEM file ``path`` (a private key file gives its public
    half); :class:`SigningKeyError` if there is none, as :func:`theoryx.provenance.keys.load_public`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key file {path}: {exc.strerror}") from None
    key = _PARSED.get(data)
    if key is not None:
        return key
    raw = raw_public_key(data)
    if raw is None:
        from theoryx.provenance import keys

        return keys.load_public(path)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(raw)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[data] = key
    return key


def trusted_keys(config: RemoteConfig) -> list[Ed25519PublicKey]:
    """The configured trusted public keys, plus this client's own signing key's public half.
    An unreadable key file is :class:`theoryx.errors.RemoteConfigError`."""
    out = []
    paths = list(config.trusted_keys) + ([config.signing_key] if config.signing_key else [])
    for path in paths:
        try:
            out.append(load_public(path))
        except SigningKeyError as exc:
            if path == config.signing_key and path not in config.trusted_keys:
                continue  # an unusable signing key is reported when uploading, not here
            raise RemoteConfigError(f"trusted key: {exc.message}") from None
    return out


_KEYIDS: dict[bytes, str] = {}


def keyid(raw: bytes) -> str:
    """The key id of the raw public key ``raw``: hex SHA-256, as ``theoryx.provenance.keys``."""
    found = _KEYIDS.get(raw)
    if found is not None:
        return found
    from cryptography.hazmat.primitives import hashes  # loaded with ed25519 already; hashlib is not

    digest = hashes.Hash(hashes.SHA256())
    digest.update(raw)
    kid = digest.finalize().hex()
    if len(_KEYIDS) >= _PARSED_MAX:
        _KEYIDS.clear()
    _KEYIDS[raw] = kid
    return kid


def _b64(text: Any, what: str) -> bytes:
    """Canonical standard or URL-safe base64, padded or not, as
    :func:`theoryx.provenance.dsse.b64decode` accepts; else :class:`RemoteRejected`. The form
    theoryx writes (standard alphabet, padded) is recognised first, by decoding and encoding
    again (:func:`standard_b64decode`); any other text takes the general check."""
    data = standard_b64decode(text)
    if data is not None:
        return data
    try:
        return canonical_b64decode(text)
    except Base64Error as exc:
        reason = f"{what} must be a base64 string" if exc.reason.startswith("must") else f"{what} {exc.reason}"
        raise RemoteRejected(f"not a DSSE envelope ({reason})") from None


def verified(raw: bytes, payload_type: str, keys: Sequence[Ed25519PublicKey]) -> bytes:
    """The payload of the DSSE envelope in ``raw`` (JSON) if it has ``payload_type`` and a
    signature that verifies with one of ``keys``; :class:`RemoteRejected` saying why not.

    This is :func:`theoryx.provenance.dsse.verify` (ed25519 over ``PAE(type, payload)``; a
    signature is tried with a key when its keyid is empty or the key's), written out so that a
    remote hit does not import ``dsse``, ``keys`` and ``hashlib`` (~8 ms); the tests check that
    both accept and refuse the same envelopes."""
    import json

    from cryptography.exceptions import InvalidSignature

    try:
        d = json.loads(raw)
    except ValueError:
        raise RemoteRejected("not JSON") from None
    if not isinstance(d, dict) or not isinstance(d.get("payloadType"), str):
        raise RemoteRejected("not a DSSE envelope (payloadType must be a string)")
    sigs = d.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise RemoteRejected("not a DSSE envelope (signatures must be a non-empty list)")
    signatures: list[tuple[str, bytes]] = []
    for n, s in enumerate(sigs):
        if not isinstance(s, dict) or not isinstance(s.get("keyid", ""), str):
            raise RemoteRejected(f"not a DSSE envelope (signatures[{n}] must be an object with a string keyid)")
        signatures.append((s.get("keyid", ""), _b64(s.get("sig"), f"signatures[{n}].sig")))
    payload = _b64(d.get("payload"), "payload")
    if d["payloadType"] != payload_type:
        raise RemoteRejected(f"payload type {d['payloadType']!r} is not {payload_type}")
    if not keys:
        raise RemoteRejected("no trusted key is configured (trusted_keys in remote.json)")
    t = payload_type.encode()
    message = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)  # PAE (dsse.pae)
    for key in keys:
        kid = keyid(key.public_bytes_raw())
        for signer, sig in signatures:
            if signer not in ("", kid):
                continue
            try:
                key.verify(sig, message)
                return payload
            except InvalidSignature:
                continue
    signers = ", ".join(k[:16] for k, _ in signatures) or "nobody"
    raise RemoteRejected(f"not signed by a trusted key (signed by {signers})")
