"""The ``modal`` adapter is not implemented yet."""

from __future__ import annotations

from typing import Any, NoReturn

from ..errors import AdapterUnavailable


def create(**_: Any) -> NoReturn:
    raise AdapterUnavailable(
        "the modal adapter is not implemented yet; use --adapter mock (offline) or --adapter local (Docker)"
    )
