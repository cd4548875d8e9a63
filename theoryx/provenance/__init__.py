"""theoryx.provenance: what an execution proves, and checking it again (the receipts themselves
are written by every run: :mod:`theoryx.store.receipts`).

Public modules:

- :mod:`~theoryx.provenance.audit`: ``theoryx audit``, re-executing a recorded action and
  comparing its outputs; :mod:`~theoryx.provenance.audit_records`: the stored verdicts of those
  audits (table ``audits``);
- :mod:`~theoryx.provenance.explain`: why two memo keys differ, ingredient by ingredient;
- :mod:`~theoryx.provenance.intoto`: an execution as an in-toto Statement with SLSA provenance;
- :mod:`~theoryx.provenance.attestation`: exporting and verifying portable receipts;
- :mod:`~theoryx.provenance.dsse`, :mod:`~theoryx.provenance.keys`: DSSE envelopes and the
  ed25519 keys that sign them.

May import :mod:`theoryx.pipeline` (an audit replays a run through the session) and every
package below it: :mod:`theoryx.adapters`, :mod:`theoryx.budget`, :mod:`theoryx.store`,
:mod:`theoryx.spec`, :mod:`theoryx.core`, :mod:`theoryx.errors`, ``cas``. Importing this package
loads none of its modules.
"""
