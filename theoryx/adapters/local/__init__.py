"""theoryx.adapters.local: the ``local`` adapter, processors in containers on the local Docker
engine, with its edges beside it.

Public modules:

- :mod:`~theoryx.adapters.local.adapter`: the adapter (sandbox, timeout, logs, cleanup);
- :mod:`~theoryx.adapters.local.docker_client`: the only module that calls the docker SDK
  (imported lazily) and maps its exceptions to theoryx errors;
- :mod:`~theoryx.adapters.local.images`: building processor images offline, tagged by content.
- :mod:`~theoryx.adapters.local.workers`: a batch's persistent workers (long-lived containers
  serving one request per stdin line; BUILD.md, "Persistent workers").

Part of :mod:`theoryx.adapters`: may import the rest of it and :mod:`theoryx.budget`,
:mod:`theoryx.store`, :mod:`theoryx.spec`, :mod:`theoryx.core`, :mod:`theoryx.errors`, ``cas``;
one exception: the adapter scrubs streamed logs with :mod:`theoryx.adapters.logs`
(ARCHITECTURE.md, "Exceptions"). Importing this package loads none of its modules (and so never
docker): :func:`theoryx.adapters.get` imports the adapter only when a miss needs it.
"""
