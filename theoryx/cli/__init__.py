"""The theoryx command line: ``main`` (the console entry point, :mod:`theoryx.cli.main`) tries the
click-free cache-hit fast path (:mod:`theoryx.cli.fastpath`) and then the click application
(:mod:`theoryx.cli.app`). This package imports nothing at import time, so the fast path stays lean.
"""
