"""theoryx.adapters.modal: the ``modal`` adapter, processors in Modal Sandboxes.

Modules:

- :mod:`~theoryx.adapters.modal.adapter`: the adapter (options, GPU check, image recipe, command,
  the run's plan; environment class ``modal``);
- :mod:`~theoryx.adapters.modal.boundary`: every call into the ``modal`` client and the mapping of
  its exceptions (the only module that imports ``modal``);
- :mod:`~theoryx.adapters.modal.blobs`: the content-addressed Volume the inputs travel through;
- :mod:`~theoryx.adapters.modal.sandbox`: one execution in a Sandbox (setup, the processor, the
  verdict, reading back);
- :mod:`~theoryx.adapters.modal.outputs`: the output tree, streamed back as tar and recreated in
  the workspace.

Part of :mod:`theoryx.adapters`: may import the rest of it and :mod:`theoryx.budget`,
:mod:`theoryx.store`, :mod:`theoryx.spec`, :mod:`theoryx.core`, :mod:`theoryx.errors`, ``cas``.
Importing this package loads none of its modules (and so never modal).
"""
