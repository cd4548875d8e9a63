"""ui/gallery@1: one output of every kind the run page previews (text, JSON, a PNG image, bytes).

Standard library only, shared by ``mock.py`` (in the executor's process) and ``run.py`` (in the
container). Inputs: ``note`` (any text, echoed to stdout and into ``text/hello.txt``), ``size``
(the image's width, default 96), optionally ``file`` (an attachment, whose byte count is
reported). If the secret ``UI_SECRET`` is set, its value is printed to stdout: theoryx must
scrub it from the captured log, and the page must never show it.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any


def png(width: int, height: int) -> bytes:
    """A gradient as a valid RGB PNG."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 255 // width, y * 255 // height, 170))
                    for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make(inputs: dict[str, Any], outdir: Path, seed: int, secret: str | None,
         read_file: Any = None) -> tuple[str, dict[str, Any]]:
    """Write the outputs into ``outdir``; return (stdout text, result)."""
    note = str(inputs.get("note", ""))
    width = int(inputs.get("size", 96))
    (outdir / "text").mkdir(parents=True, exist_ok=True)
    (outdir / "text" / "hello.txt").write_text(f"Hello from the gallery.\nnote: {note}\nseed: {seed}\n")
    attached = None
    if isinstance(inputs.get("file"), dict) and read_file is not None:
        attached = len(read_file(inputs["file"]["$artifact"]))
    body = {"note": note, "seed": seed, "width": width, "attached_bytes": attached, "nested": {"list": [1, 2, 3]}}
    (outdir / "data.json").write_text(json.dumps(body, sort_keys=True))
    (outdir / "plot.png").write_bytes(png(width, max(8, width * 2 // 3)))
    (outdir / "blob.bin").write_bytes(bytes(range(256)) * 4)
    out = f"gallery wrote 4 outputs for note {note!r}\n"
    if secret:
        out += f"the secret is {secret}\n"
    return out, {"usage": {"images": 1}, "cost_usd": 0.25, "meta": {"width": width}}
