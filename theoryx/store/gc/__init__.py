"""theoryx.store.gc: ``theoryx gc``, which drops what nobody needs and never what a run in flight
needs.

Public modules:

- :mod:`~theoryx.store.gc.collect`: recover, mark, evict by age or size, withdraw, restore, purge;
- :mod:`~theoryx.store.gc.lock`: ``gc.lock``, one gc (or ``verify --repair``) at a time;
- :mod:`~theoryx.store.gc.watch`: following the lease files of runs in flight while gc works.

Part of :mod:`theoryx.store`: may import the rest of it and what it may import (
:mod:`theoryx.core`, :mod:`theoryx.errors`, ``cas``). Importing this package loads none of its
modules.
"""
