"""Runs the real :mod:`theoryx.adapters.modal.runner` on the host, as Modal runs it in a container.

``python runner_host.py <root> call|stream``: the pickled payload on stdin (as Modal serialises
a function's argument), length-prefixed pickled events on stdout: the chunks in ``stream`` mode,
then ``("done", response)``. ``<root>`` stands in for ``/``.
"""

from __future__ import annotations

import pickle
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from theoryx.adapters.modal import runner as modal_runner


def main() -> None:
    root, mode = sys.argv[1], sys.argv[2]
    payload = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer

    def send(event: Any) -> None:
        data = pickle.dumps(event)
        out.write(struct.pack(">Q", len(data)) + data)
        out.flush()

    if mode == "stream":
        for event in modal_runner.run_stream(payload, root=root):
            send(event)
    else:
        send(("done", modal_runner.run(payload, root=root)))


if __name__ == "__main__":
    main()
