"""theoryx.spec: what a processor is, and what of it enters the memo key.

Public modules:

- :mod:`~theoryx.spec.refs`: ``ns/name@version``;
- :mod:`~theoryx.spec.model`: a registry entry validated into a frozen ``ProcessorSpec``, and
  its execution fields (the part that enters the key);
- :mod:`~theoryx.spec.registry`: finding and loading specs, with the parsed-spec cache (the
  ``specs`` table) so that a cache hit never parses YAML;
- :mod:`~theoryx.spec.context`: image identity (build context manifest, build args, pinned
  image) and the environment class.

May import :mod:`theoryx.core`, :mod:`theoryx.errors` and ``cas``; one exception: the registry
uses :mod:`theoryx.store.db` for its spec cache (ARCHITECTURE.md, "Exceptions"). Importing this
package loads none of its modules.
"""
