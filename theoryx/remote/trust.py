"""The keys a team cache client trusts, and the check of a signed entry against them.

Imported only once the remote answered with an entry: loading ``cryptography`` costs ~10 ms, a
remote miss (a 404) never pays it. Keys are read by :func:`theoryx.provenance.keys.load_public`
(the fixed encodings ``theoryx keygen`` writes without cryptography's PEM parser) and envelopes
checked by :mod:`theoryx.provenance.dsse`; this module words their refusals as
:class:`RemoteRejected` / :class:`RemoteConfigError`.
"""

from __future__ import annotations

from theoryx.errors import ReceiptError, RemoteConfigError, RemoteRejected, SignatureInvalid, SigningKeyError
from theoryx.provenance import dsse, keys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from theoryx.remote.config import RemoteConfig


def configured_keys(config: RemoteConfig) -> list[Ed25519PublicKey]:
    """The keys of ``config.trusted_keys``, in their order; an unreadable key file is
    :class:`theoryx.errors.RemoteConfigError`."""
    out = []
    for path in config.trusted_keys:
        try:
            out.append(keys.load_public(path))
        except SigningKeyError as exc:
            raise RemoteConfigError(f"trusted key: {exc.message}") from None
    return out


def trusted_keys(config: RemoteConfig) -> list[Ed25519PublicKey]:
    """The configured trusted public keys (:func:`configured_keys`), plus this client's own
    signing key's public half when it can be read (an unusable signing key is reported when
    uploading, not here)."""
    out = configured_keys(config)
    if config.signing_key is not None and config.signing_key not in config.trusted_keys:
        try:
            out.append(keys.load_public(config.signing_key))
        except SigningKeyError:
            pass
    return out


def verified(raw: bytes, payload_type: str, keys: Sequence[Ed25519PublicKey]) -> bytes:
    """The payload of the DSSE envelope in ``raw`` (JSON) if it has ``payload_type`` and a
    signature that verifies with one of ``keys`` (:func:`theoryx.provenance.dsse.verify`);
    :class:`RemoteRejected` saying why not."""
    import json

    try:
        d = json.loads(raw)
    except ValueError:
        raise RemoteRejected("not JSON") from None
    try:
        envelope = dsse.Envelope.from_json(d)
    except ReceiptError as exc:
        raise RemoteRejected(exc.message) from None
    if envelope.payload_type != payload_type:
        raise RemoteRejected(f"payload type {envelope.payload_type!r} is not {payload_type}")
    if not keys:
        raise RemoteRejected("no trusted key is configured (trusted_keys in remote.json)")
    for key in keys:
        try:
            dsse.verify(envelope, key)
            return envelope.payload
        except SignatureInvalid:
            continue
    signers = ", ".join(s.keyid[:16] for s in envelope.signatures) or "nobody"
    raise RemoteRejected(f"not signed by a trusted key (signed by {signers})")
