"""theoryx.core: building blocks that know nothing of a home, a spec or a run.

Public modules:

- :mod:`~theoryx.core.canonical`: RFC 8785 canonical bytes and BLAKE3 digests (stdlib encoder,
  on every cache hit);
- :mod:`~theoryx.core.ids`: execution ids that sort by time;
- :mod:`~theoryx.core.jsondiff`: where two JSON values differ, by pointer or dotted path;
- :mod:`~theoryx.core.durations`: durations and sizes as users write and read them;
- :mod:`~theoryx.core.notices`: what library code tells a person, through a logger, never print;
- :mod:`~theoryx.core.syncpoints`: named pause points for tests that force interleavings.

May import :mod:`theoryx.errors` and ``cas`` only (ARCHITECTURE.md, "Packages and what they may
import"). Importing this package loads none of its modules.
"""
