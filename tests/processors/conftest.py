"""Fixtures for tests of the processors in ``registry/processors``.

The processors are tested as programs: their ``run.py`` runs as a host subprocess under the
contract (``tests.fakes.contract``), LLM calls go to ``tests.fakes.openai_server`` on
127.0.0.1. The repository root is put on ``sys.path`` so that ``tests.fakes`` imports however
pytest was started.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
