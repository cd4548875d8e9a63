"""Placeholder until the Docker adapter lands (see issue 3)."""

from __future__ import annotations

from typing import Any, NoReturn

from ..errors import AdapterUnavailable


def create(**_: Any) -> NoReturn:
    raise AdapterUnavailable(
        "the local (Docker) adapter is not available in this build; use --adapter mock"
    )
