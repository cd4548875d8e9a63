"""Processor specs installed with theoryx (the registry/ directory of the source tree)."""
