"""theoryx.budget: what runs cost and the plans that pay for them, never overshooting a limit.

Public modules:

- :mod:`~theoryx.budget.money`: integer micro-USD, dollars only at the edges;
- :mod:`~theoryx.budget.pricing`: LLM token prices and compute rates (without importing litellm);
- :mod:`~theoryx.budget.costs`: the worst-case estimate reserved before a run and the actual cost;
- :mod:`~theoryx.budget.plans`: plans, limits, reservations (tables ``plans``, ``reservations``);
- :mod:`~theoryx.budget.ledger`: each plan's append-only, hash-chained ledger (``ledger``);
- :mod:`~theoryx.budget.charging`: one run's dealings with its plan: admit, settle, record a hit.

May import :mod:`theoryx.store`, :mod:`theoryx.spec`, :mod:`theoryx.core`, :mod:`theoryx.errors`
and ``cas``; one exception: :mod:`~theoryx.budget.charging` names :mod:`theoryx.adapters.base`
types for type checking only (ARCHITECTURE.md, "Exceptions"). Importing this package loads none
of its modules (a plain cache hit never loads pricing).
"""
