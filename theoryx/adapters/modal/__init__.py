"""theoryx.adapters.modal: the ``modal`` adapter, processors on Modal's cloud through a thin
boundary.

Public modules:

- :mod:`~theoryx.adapters.modal.adapter`: the adapter (prepares one call, reads the response
  back into the workspace);
- :mod:`~theoryx.adapters.modal.boundary`: every call into the ``modal`` client and the mapping
  of its exceptions, so that an offline fake can stand in for it;
- :mod:`~theoryx.adapters.modal.runner`: the function body that runs inside the container
  (standard library only, Python 3.9+; it imports nothing of theoryx).

Part of :mod:`theoryx.adapters`: may import the rest of it and :mod:`theoryx.budget`,
:mod:`theoryx.store`, :mod:`theoryx.spec`, :mod:`theoryx.core`, :mod:`theoryx.errors`, ``cas``;
one exception: the adapter scrubs streamed logs with :mod:`theoryx.adapters.logs`
(ARCHITECTURE.md, "Exceptions"). Importing this package loads none of its modules (and so never
modal).
"""
