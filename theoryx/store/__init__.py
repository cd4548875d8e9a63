"""theoryx.store: a theoryx home on disk, its LMDB tables and its lifecycle.

Public modules:

- :mod:`~theoryx.store.home`: the layout of ``$THEORYX_HOME``;
  :mod:`~theoryx.store.handle`: ``open_stores`` (the CAS and the database of one home);
- :mod:`~theoryx.store.db`: the one LMDB environment and which module owns each table;
- :mod:`~theoryx.store.action_cache`: memo key -> action result (table ``ac``);
- :mod:`~theoryx.store.executions`: execution records and world paths (``executions``, ``paths``);
- :mod:`~theoryx.store.receipts`: each execution's receipt (``determinism.json``) and output
  index, stored as blobs;
- :mod:`~theoryx.store.worldpaths`: resolving ``/artifacts/...`` paths and cids to blobs;
- :mod:`~theoryx.store.leases`: one flock'd file per run in flight (gc roots);
- :mod:`~theoryx.store.pins`: executions gc keeps (``pins``);
- :mod:`~theoryx.store.liveness`: what the store must keep, as gc and verify both see it;
- :mod:`~theoryx.store.verify`, :mod:`~theoryx.store.stats`: ``theoryx verify``, ``du``, ``stats``;
- :mod:`theoryx.store.gc`: ``theoryx gc``.

May import :mod:`theoryx.core`, :mod:`theoryx.errors` and ``cas`` (ARCHITECTURE.md, "Packages and
what they may import"). Importing this package loads none of its modules.
"""
