"""Blobs inside a signed entry (layout v1's optional ``inline``): which ones a writer puts there,
and that a reader takes none it cannot check against its cid."""

from __future__ import annotations

import base64
import json

import pytest

from cas import cid_of_bytes
from theoryx.core.canonical import canonical_bytes
from theoryx.errors import RemoteRejected
from theoryx.remote import layout
from theoryx.store.action_cache import ActionResult, OutputEntry

ACTION = b'{"action": 1}'
MANIFEST = b'{"manifest": 1}'
OUT = b"echo: hi"


def entry() -> ActionResult:
    key = cid_of_bytes(ACTION)
    return ActionResult(
        memo_key=key, action_cid=key, manifest_cid=cid_of_bytes(MANIFEST),
        outputs=(OutputEntry("/artifacts/outputs/out.txt", cid_of_bytes(OUT), len(OUT), "text/plain"),),
        exit_code=0, stdout_cid=None, stderr_cid=None, usage={}, cost_micros=0, duration_ms=1,
        execution_id="01abc", adapter="mock", created_ms=1, last_used_ms=2)


def test_inline_blobs_travel_in_the_payload_and_are_checked_on_the_way_back() -> None:
    e = entry()
    inline = {cid_of_bytes(b): b for b in (ACTION, MANIFEST, OUT)}
    payload = layout.decode(layout.encode(e, None, None, inline), e.memo_key)
    assert dict(payload.inline) == inline
    assert "inline" not in json.loads(layout.encode(e, None, None))  # none: the key is left out
    assert layout.decode(layout.encode(e, None, None), e.memo_key).inline == {}


def forged(**inline: object) -> bytes:
    e = entry()
    d = json.loads(layout.encode(e, None, None))
    d["inline"] = inline["value"] if "value" in inline else inline
    return canonical_bytes(d)


@pytest.mark.parametrize(("inline", "says"), [
    ({"value": ["x"]}, "inline blobs are malformed"),
    ({cid_of_bytes(b"stranger"): base64.b64encode(b"stranger").decode()}, "that its entry does not name"),
    ({cid_of_bytes(OUT): base64.b64encode(b"echo: HI").decode()}, "does not match its cid"),
    ({cid_of_bytes(OUT): base64.b64encode(OUT).decode() + "=="}, "not canonical base64"),
    ({cid_of_bytes(OUT): 5}, "not canonical base64"),
])
def test_an_inline_blob_the_reader_cannot_check_rejects_the_entry(inline: dict[str, object], says: str) -> None:
    with pytest.raises(RemoteRejected, match=says):
        layout.decode(forged(**inline), entry().memo_key)


def test_an_output_inline_must_have_the_size_its_entry_states() -> None:
    e = entry()
    bigger = ActionResult.from_dict({**e.to_dict(), "outputs": [
        {"path": "/artifacts/outputs/out.txt", "cid": cid_of_bytes(OUT), "size_bytes": len(OUT) + 1,
         "mime": "text/plain"}]})
    with pytest.raises(RemoteRejected, match="is not the 9 bytes its entry states"):
        layout.decode(layout.encode(bigger, None, None, {cid_of_bytes(OUT): OUT}), e.memo_key)


def test_the_smallest_blobs_are_chosen_within_both_bounds() -> None:
    sizes = {"b3:" + c * 64: s for c, s in zip("abcdef", (10, layout.INLINE_BLOB + 1, 5, layout.INLINE_BLOB,
                                                          layout.INLINE_BLOB, layout.INLINE_BLOB), strict=True)}
    chosen = layout.inline_choice(sizes)
    assert chosen[:2] == ["b3:" + "c" * 64, "b3:" + "a" * 64]
    assert "b3:" + "b" * 64 not in chosen  # above the per-blob bound
    assert sum(sizes[c] for c in chosen) <= layout.INLINE_TOTAL
    assert len(chosen) == 2 + (layout.INLINE_TOTAL - 15) // layout.INLINE_BLOB
