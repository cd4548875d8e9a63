"""DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse v1) with ed25519 signatures.

A signature covers ``PAE(payloadType, payload)``, never the payload alone, so a signature made
for one payload type never verifies as another::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

(``SP`` an ASCII space, ``LEN`` the decimal byte length without leading zeros). The JSON
envelope is ``{"payload": b64, "payloadType": str, "signatures": [{"keyid": str, "sig": b64}]}``.
Verifiers accept standard and URL-safe base64 (as the spec requires) but only its canonical
form, so that no two encodings of a payload both verify. ``keyid`` is an unauthenticated hint:
it only narrows which signatures are tried with a key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from theoryx.core.b64 import Base64Error, canonical_b64decode
from theoryx.errors import ReceiptError, SignatureInvalid
from theoryx.provenance.keys import keyid

TYPE_CHECKING = False  # typing and the key classes stay unimported at run time (a remote hit)
if TYPE_CHECKING:
    from typing import Any

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """The pre-authentication encoding a signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not, in canonical form only; else :class:`ReceiptError`."""
    try:
        return canonical_b64decode(text)
    except Base64Error as exc:
        raise ReceiptError(f"not a DSSE envelope: {what} {exc.reason}") from None


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A payload, its type and its signatures."""

    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures],
        }

    @classmethod
    def from_json(cls, d: Any) -> Envelope:
        """Parse the JSON envelope; :class:`ReceiptError` names the malformed field."""
        if not isinstance(d, dict) or not isinstance(d.get("payloadType"), str):
            raise ReceiptError("not a DSSE envelope: payloadType must be a string")
        sigs = d.get("signatures")
        if not isinstance(sigs, list) or not sigs:
            raise ReceiptError("not a DSSE envelope: signatures must be a non-empty list")
        parsed = []
        for i, s in enumerate(sigs):
            if not isinstance(s, dict):
                raise ReceiptError(f"not a DSSE envelope: signatures[{i}] must be an object")
            kid = s.get("keyid", "")
            if not isinstance(kid, str):
                raise ReceiptError(f"not a DSSE envelope: signatures[{i}].keyid must be a string")
            parsed.append(Signature(kid, b64decode(s.get("sig"), f"signatures[{i}].sig")))
        return cls(b64decode(d.get("payload"), "payload"), d["payloadType"], tuple(parsed))


def sign(payload: bytes, payload_type: str, key: Ed25519PrivateKey) -> Envelope:
    """An envelope with one ed25519 signature over ``PAE(payload_type, payload)``."""
    sig = key.sign(pae(payload_type, payload))
    return Envelope(payload, payload_type, (Signature(keyid(key.public_key()), sig),))


def verify(envelope: Envelope, key: Ed25519PublicKey) -> None:
    """Return if a signature whose keyid is empty or ``key``'s verifies; else :class:`SignatureInvalid`."""
    kid = keyid(key)
    candidates = [s for s in envelope.signatures if s.keyid in ("", kid)]
    if not candidates:
        named = ", ".join(s.keyid for s in envelope.signatures)
        raise SignatureInvalid(f"no signature is by key {kid} (signed by: {named})")
    from cryptography.exceptions import InvalidSignature

    message = pae(envelope.payload_type, envelope.payload)
    for s in candidates:
        try:
            key.verify(s.sig, message)
            return
        except InvalidSignature:
            continue
    raise SignatureInvalid(f"the signature does not verify with key {kid}: the receipt was altered "
                           f"or signed by another key")
