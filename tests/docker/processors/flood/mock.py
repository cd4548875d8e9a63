"""Offline flood: the same bytes as run.py, through the mock adapter's ctx.stream."""

import importlib.util
import os


def _flood():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood.py")
    spec = importlib.util.spec_from_file_location("theoryx_test_flood", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(inputs, outdir, ctx):
    flood = _flood()
    for _, data in flood.blocks(int(inputs.get("stdout_bytes", 0))):
        ctx.stream(data.decode())   # text: the ctx.stream of every theoryx version takes str
    if int(inputs.get("file_bytes", 0)):
        flood.write_file(os.path.join(str(outdir), "big.bin"), int(inputs["file_bytes"]))
    return None
