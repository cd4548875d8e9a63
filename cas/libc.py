"""C library functions the standard library does not wrap, each loaded once, on first use.

``ctypes`` is imported only when a function is first asked for, so a process that never needs
one (a cache hit) never loads it.
"""

from __future__ import annotations

import _thread
import sys

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any

_loaded: dict[str, Any] = {}
_lock = _thread.allocate_lock()  # not `threading`: a cache hit never loads it


def function(name: str, argtypes: tuple[str, ...], restype: str) -> Any:
    """The C library's ``name``, its argument and result types given by their ``ctypes`` names
    (``"c_int"``); None off Linux or where the C library has no such function. Loaded once per
    process, thread-safely; later calls return the same object."""
    try:
        return _loaded[name]
    except KeyError:
        pass
    with _lock:
        if name not in _loaded:
            _loaded[name] = _load(name, argtypes, restype)
        return _loaded[name]


def _load(name: str, argtypes: tuple[str, ...], restype: str) -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        func = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    func.argtypes = [getattr(ctypes, t) for t in argtypes]
    func.restype = getattr(ctypes, restype)
    return func
