"""The run pipeline: one request through prepare, look up, hit or miss, and record.

Read it top to bottom in this order (each step a function with typed input and output):

- :mod:`~theoryx.pipeline.request`  :class:`RunRequest`, what a run is asked;
- :mod:`~theoryx.pipeline.session`  :class:`Session`, the one door, and the flow itself;
- :mod:`~theoryx.pipeline.prepare`  spec, attachments (hashed), inputs, identity -> :class:`Prepared`;
- :mod:`~theoryx.pipeline.lookup`   the validated action cache entry, or None;
- :mod:`~theoryx.pipeline.hit`      answer from the cache;
- :mod:`~theoryx.pipeline.miss`     validate, store, admit, materialise, execute, ingest, settle;
- :mod:`~theoryx.pipeline.record`   receipt, index, execution record (+ cache entry);
- :mod:`~theoryx.pipeline.result`   :class:`RunResult` and :class:`Output` (verified reads).

Helpers of the steps: ``running`` (the run in progress), ``action`` (the memo key),
``attachments``, ``writeprefix``, ``ingest`` (outputs into the CAS).
May import: ``theoryx.errors``, ``core``, ``store``, ``spec``, ``budget`` and ``adapters``;
never ``provenance`` or ``cli``. The public names are re-exported by :mod:`theoryx`.
"""
