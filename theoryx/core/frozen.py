"""Copies of frozen dataclass values without re-running ``__init__``.

:func:`dataclasses.replace` calls the class's ``__init__``, which for a frozen dataclass sets
every field through ``object.__setattr__``: ~10 µs for a record of thirty fields. A batch makes
several copies per item, thousands per second, of values whose fields are already valid, so the
hot copies go through :func:`replaced` instead.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")


def replaced(value: T, fields: dict[str, Any]) -> T:
    """A copy of ``value`` (a dataclass instance without ``__slots__``) with ``fields`` changed
    and no ``__init__`` or ``__post_init__`` run: the caller guarantees that the names are fields
    and the values valid, and that no field is a derived one."""
    new: T = object.__new__(type(value))
    vars(new).update(vars(value), **fields)
    return new


def built(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of ``cls`` holding exactly ``fields`` (every field, valid), without ``__init__``."""
    new: T = object.__new__(cls)
    vars(new).update(fields)
    return new
