"""The team cache's layout on the remote, version 1 (BUILD.md, "Team cache")::

    <url>/cas-v1/<2 hex>/<62 hex>            a blob, by the 64 hex digits of its BLAKE3 cid
    <url>/ac-v1/<64 hex>.dsse.json           an action result, by the hex digits of its memo key

An action result is a DSSE envelope (``theoryx.provenance.dsse``: ed25519 over
``PAE(payloadType, payload)``) whose ``payloadType`` is :data:`PAYLOAD_TYPE` and whose payload
is the RFC 8785 JSON object::

    {"v": 1, "memo_key": "b3:...", "entry": {<the action cache entry>},
     "receipt_cid": "b3:...", "receipt": {<the producing execution's receipt>},
     "inline": {"b3:...": "<base64 of the blob>", ...}}

The entry is ``theoryx.store.action_cache.ActionResult.to_dict()``; the receipt is the
producer's ``determinism.json``, also stored as the blob ``receipt_cid``. Every cid the entry
names, and the receipt's, is a blob under ``cas-v1/`` before the entry is written. ``inline``
(optional, absent when empty) repeats the bytes of the entry's smallest blobs (each at most
:data:`INLINE_BLOB`, together at most :data:`INLINE_TOTAL`), as the Bazel remote execution API's
``inline_stdout``/``inline_outputs`` do, so that a reader gets a small result in one request
instead of two rounds; a reader checks each against its cid as it checks a download, and a
reader that ignores the key (an older one) downloads them. A new layout gets new prefixes
(``cas-v2``, ``ac-v2``) so that old and new clients can share one bucket.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from cas import cid_of_bytes, is_cid
from theoryx.core.b64 import standard_b64decode
from theoryx.core.canonical import canonical_bytes
from theoryx.errors import RemoteRejected
from theoryx.store.action_cache import ActionResult

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

VERSION = 1
CAS_PREFIX = "cas-v1"
AC_PREFIX = "ac-v1"
PAYLOAD_TYPE = "application/vnd.theoryx.ac+json"
MAX_ENTRY_BYTES = 4 << 20
"""An envelope larger than this is not an entry theoryx wrote: it is not read further."""
INLINE_BLOB = 16 << 10
"""A blob of at most this many bytes may travel inside its entry (``inline``)."""
INLINE_TOTAL = 64 << 10
"""At most this many bytes of blobs travel inside one entry (~115 KiB of envelope once base64
is applied to them and again to the payload)."""


def _hex(cid: str, what: str) -> str:
    if not is_cid(cid):
        raise RemoteRejected(f"{what} {cid!r} is not a cid")
    return cid[3:]


def blob_path(cid: str) -> str:
    """``cas-v1/<2 hex>/<62 hex>`` for blob ``cid``."""
    h = _hex(cid, "blob")
    return f"{CAS_PREFIX}/{h[:2]}/{h[2:]}"


def entry_path(memo_key: str) -> str:
    """``ac-v1/<64 hex>.dsse.json`` for the action result of ``memo_key``."""
    return f"{AC_PREFIX}/{_hex(memo_key, 'memo key')}.dsse.json"


@dataclass(frozen=True)
class Payload:
    """What a signed entry says: the action cache entry and the producer's receipt, and the
    bytes of the blobs it carries inline (each checked against its cid by :func:`decode`)."""

    entry: ActionResult
    receipt_cid: str | None
    receipt: dict[str, Any] | None
    inline: Mapping[str, bytes] = field(default_factory=dict)

    def blobs(self) -> list[str]:
        """Every blob the entry needs on the remote, without repeats, the receipt last."""
        cids = list(dict.fromkeys(self.entry.blobs()))
        if self.receipt_cid and self.receipt_cid not in cids:
            cids.append(self.receipt_cid)
        return cids

    def sizes(self) -> dict[str, int]:
        """The sizes the entry states (its outputs'); other blobs are bounded by their HEAD."""
        return {o.cid: o.size for o in self.entry.outputs}


def encode(entry: ActionResult, receipt_cid: str | None, receipt: dict[str, Any] | None,
           inline: Mapping[str, bytes] | None = None) -> bytes:
    """The payload's canonical bytes. The entry's last use is not shared (it is the producer's
    LRU clock): it is set to its creation time. ``inline``: blobs of the entry (by cid) whose
    bytes travel in the payload (see :func:`inline_choice`); the key is left out when empty."""
    shared = entry.used_at(entry.created_ms).to_dict()
    payload: dict[str, Any] = {"v": VERSION, "memo_key": entry.memo_key, "entry": shared,
                               "receipt_cid": receipt_cid, "receipt": receipt}
    if inline:
        payload["inline"] = {cid: base64.b64encode(data).decode() for cid, data in inline.items()}
    return canonical_bytes(payload)


def inline_choice(sizes: Mapping[str, int]) -> list[str]:
    """Which of the blobs ``sizes`` names (cid -> size) travel inline: the smallest first (ties
    by cid), each at most :data:`INLINE_BLOB` bytes, while they add up to :data:`INLINE_TOTAL`."""
    chosen, total = [], 0
    for size, cid in sorted((size, cid) for cid, size in sizes.items()):
        if size > INLINE_BLOB or total + size > INLINE_TOTAL:
            break
        chosen.append(cid)
        total += size
    return chosen


def decode(data: bytes, memo_key: str) -> Payload:
    """The payload of a *verified* envelope found under ``memo_key``'s path, after checking that
    it is about that key and is coherent; :class:`RemoteRejected` says what is wrong. A valid
    signature alone is not enough: an entry signed for one key must not answer another."""
    try:
        d = json.loads(data)
    except ValueError:
        raise RemoteRejected("the payload is not JSON") from None
    if not isinstance(d, dict) or d.get("v") != VERSION:
        raise RemoteRejected(f"the payload is not a version {VERSION} theoryx entry")
    if d.get("memo_key") != memo_key:
        raise RemoteRejected(f"the payload is for memo key {d.get('memo_key')!r}, not {memo_key}")
    try:
        entry = ActionResult.from_dict(d["entry"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RemoteRejected("the payload's entry is malformed") from None
    if entry.memo_key != memo_key or entry.action_cid != memo_key:
        raise RemoteRejected("the payload's entry is for another action")
    if entry.exit_code != 0:
        raise RemoteRejected("the payload's entry is not a success")
    for cid in entry.blobs():
        _hex(cid, "entry blob")
    for o in entry.outputs:
        if not o.path.startswith("/artifacts/") or ".." in o.path.split("/") or o.size < 0:
            raise RemoteRejected(f"the payload's entry names an impossible output {o.path!r}")
    receipt_cid, receipt = d.get("receipt_cid"), d.get("receipt")
    if receipt_cid is not None:
        _hex(receipt_cid, "receipt")
        if not isinstance(receipt, dict):
            raise RemoteRejected("the payload names a receipt blob but holds no receipt")
        _check_receipt(receipt, entry)
    inline = _inline(d.get("inline"), set(Payload(entry, receipt_cid, receipt).blobs()))
    for o in entry.outputs:
        if o.cid in inline and len(inline[o.cid]) != o.size:
            raise RemoteRejected(f"the payload's inline blob {o.cid} is not the {o.size} bytes its entry states")
    return Payload(entry, receipt_cid, receipt, inline)


def _inline(value: Any, blobs: set[str]) -> dict[str, bytes]:
    """The inline blobs of a payload, each checked: a blob of the entry, in canonical base64,
    hashing to its cid (a signature vouches for who wrote them, not for their bytes)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RemoteRejected("the payload's inline blobs are malformed")
    out = {}
    for cid, text in value.items():
        if cid not in blobs:
            raise RemoteRejected(f"the payload holds an inline blob {cid!r} that its entry does not name")
        data = standard_b64decode(text)
        if data is None:
            raise RemoteRejected(f"the payload's inline blob {cid} is not canonical base64")
        actual = cid_of_bytes(data)
        if actual != cid:
            raise RemoteRejected(f"the payload's inline blob {cid} does not match its cid (it hashes to "
                                 f"{actual}): rejected")
        out[cid] = data
    return out


def _check_receipt(receipt: dict[str, Any], entry: ActionResult) -> None:
    """The receipt must describe the entry's execution: same key, execution and outputs."""
    if receipt.get("memo_key") != entry.memo_key or receipt.get("execution_id") != entry.execution_id:
        raise RemoteRejected("the payload's receipt is for another execution")
    if receipt.get("output_cids") != {o.path: o.cid for o in entry.outputs}:
        raise RemoteRejected("the payload's receipt names other outputs than its entry")
