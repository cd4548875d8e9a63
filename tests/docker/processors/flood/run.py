"""Flood processor: writes what inputs say (see flood.py) to stdout, stderr and an output file."""

import json
import os
import sys

from flood import blocks, write_file  # beside this file: /app is on sys.path

inputs = json.load(open(os.environ["THEORYX_INPUTS"]))
prefix = os.environ["THEORYX_WRITE_PREFIX"]
secret = os.environ.get("FLOOD_SECRET", "") if inputs.get("secret") else ""

for name, stream in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
    for _, data in blocks(int(inputs.get(f"{name}_bytes", 0))):
        stream.write(data)
        if secret and name == "stdout":
            stream.write(b" secret=" + secret[:7].encode())
            stream.flush()           # the value is split across two writes (and pipe reads)
            stream.write(secret[7:].encode() + b"\n")
    stream.flush()
if int(inputs.get("file_bytes", 0)):
    write_file(os.path.join(prefix, "big.bin"), int(inputs["file_bytes"]))
