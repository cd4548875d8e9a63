"""A run's dealings with its budget plan: reserve before executing, settle after, record hits.

Everything here is imported only on a miss, or on a hit that names a plan, so that a plain
cache hit never loads pricing. Notes and warnings are notices (:mod:`theoryx.core.notices`): the
CLI shows them on stderr, where they cannot spoil the one JSON object stdout may carry.

Settling keeps the ledger true and the limit held wherever theoryx decides:

- a processor's report that is refused (:func:`theoryx.budget.money.check_reported`: not a
  finite non-negative number of at most $10,000, or token counts that are not non-negative
  integers) is not charged; the run is charged its reservation — the most it could cost — with a
  warning, and the refusal is written on the ledger's ``settle`` event;
- a cost above the reservation (a processor that reports more than its spec's worst case, or
  compute billed beyond the timeout and margin) is charged in full, as what it cost: the
  ``settle`` event charges the reservation and an ``overrun`` event the rest, with a warning, and
  :attr:`Charging.overrun_micros` says how much, for the execution record and ``--json``. The
  plan's remaining money may then be negative, and every later admission is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from theoryx.core.notices import note, warning
from theoryx.spec.model import ProcessorSpec
from theoryx.store.handle import Stores

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)

if TYPE_CHECKING:
    from typing import Any

    from theoryx.adapters.base import Adapter, Outcome
    from theoryx.budget.costs import Estimate
    from theoryx.budget.pricing import Rates


class Charging:
    """The plan side of one execution. ``plan`` None means no plan: costs are still computed
    (they go on the record and the cache entry) but nothing is reserved or charged."""

    def __init__(self, stores: Stores, plan: str | None, execution_id: str,
                 adapter_options: Mapping[str, Any]) -> None:
        self.stores, self.plan, self.execution_id = stores, plan, execution_id
        self.adapter_options = adapter_options
        self.reserved = False                     # a reservation awaits settlement
        self.estimate_micros = 0
        self.overrun_micros = 0                   # charged beyond the reservation (settle sets it)
        self._rates: Rates | None = None

    def rates(self) -> Rates:
        if self._rates is None:
            from theoryx.budget.pricing import load_rates

            self._rates = load_rates(self.stores.home.root)
        return self._rates

    def _created(self, created: bool) -> None:
        if created:
            note(f"plan {self.plan!r} did not exist; created it without a limit (tracking only)")

    def hit(self, saved_micros: int, source_execution: str) -> None:
        """A cache hit costs 0; the plan records the money it saved."""
        if self.plan is None:
            return
        from theoryx.budget import plans

        _, created = plans.record_hit(self.stores.db, self.plan, self.execution_id, saved_micros,
                                      source_execution)
        self._created(created)

    def admit(self, spec: ProcessorSpec, inputs: Any, adapter: Adapter, lease_path: Path) -> None:
        """Reserve the worst-case cost on the plan in one write transaction
        (:func:`plans.reserve`); ``BudgetExceeded``/``PriceUnknown`` before anything runs."""
        self.rates()  # a malformed rates override fails every miss before it runs
        if self.plan is None:
            return
        from theoryx.budget import plans

        est = self.estimate(spec, inputs, adapter)
        plan, created = plans.reserve(
            self.stores.db, self.plan, self.execution_id, est.micros, lease=lease_path,
            parts=est.parts, unknown=est.unknown, ref=str(spec.ref),
        )
        self.reserved, self.estimate_micros = True, est.micros
        self._created(created)
        for why in est.unknown:   # admitted with unknown parts: the plan has no limit
            note(f"plan {plan.key!r} tracks only; this part of the cost estimates as $0: {why}")

    def estimate(self, spec: ProcessorSpec, inputs: Any, adapter: Adapter) -> Estimate:
        """The worst-case cost of this execution (:func:`theoryx.budget.costs.estimate`) under
        the timeout the adapter will enforce and the margin it may bill beyond it."""
        from theoryx.budget import costs

        return costs.estimate(spec, inputs, bills_compute=adapter.bills_compute, rates=self.rates(),
                              timeout=costs.timeout_of(spec, self.adapter_options),
                              margin_s=adapter.billing_margin_s, sandbox=_sandbox(adapter))

    def settle(self, spec: ProcessorSpec, inputs: Any, adapter: Adapter, outcome: Outcome | None,
               result: Mapping[str, Any], *, status: str) -> int:
        """The cost in micro-USD charged for this execution (see the module docstring for a
        refused report and a cost above the reservation); charged to the plan when a
        reservation is open (idempotent per execution id), in one write transaction."""
        from theoryx.budget import costs
        from theoryx.budget.money import dollars

        cost = costs.actual(spec, inputs, dict(result), None if outcome is None else outcome.duration_ms,
                            bills_compute=adapter.bills_compute, rates=self.rates(),
                            compute_seconds=None if outcome is None else outcome.meta.get("compute_seconds"),
                            sandbox=_sandbox(adapter), timeout=costs.timeout_of(spec, self.adapter_options))
        charged = cost.micros
        if cost.refused is not None:
            # What it cost is unknown: charge the most it could have cost, never a made-up figure.
            worst = self.estimate_micros if self.reserved else self.estimate(spec, inputs, adapter).micros
            charged = max(charged, worst)
            on_plan = f" to plan {self.plan!r}" if self.reserved else ""
            warning(f"execution {self.execution_id}: the processor's reported cost was refused "
                    f"({cost.refused}); charged its worst-case estimate {dollars(charged)}{on_plan}")
        if not self.reserved:
            return charged
        from theoryx.budget import plans

        # the parts (compute apart from what the processor reported or its LLM usage cost) go
        # on the ledger's settle event
        settled = plans.settle(self.stores.db, self.execution_id, charged, status=status, parts=cost.parts,
                               refused=cost.refused, billing=None if outcome is None else outcome.meta.get("billing"))
        self.reserved = False
        for why in cost.notes:
            note(f"plan {self.plan!r}: {why}")
        if settled is not None and charged > self.estimate_micros:
            self.overrun_micros = charged - self.estimate_micros
            warning(f"execution {self.execution_id} cost {dollars(charged)}, "
                    f"{dollars(self.overrun_micros)} more than its reservation {dollars(self.estimate_micros)}; "
                    f"plan {self.plan!r} was charged what it cost and its ledger records the overrun "
                    f"(does the spec of {spec.ref} declare its worst-case cost?)")
        return charged

    def settle_after_failure(self, spec: ProcessorSpec, inputs: Any, adapter: Adapter,
                             outcome: Outcome | None, result: Mapping[str, Any]) -> int | None:
        """Settle what a failed execution cost; if that fails too, the reservation stays open
        (fail closed) for ``theoryx plan reconcile`` and the original error is what surfaces."""
        try:
            return self.settle(spec, inputs, adapter, outcome, result, status="error")
        except Exception as exc:
            note(f"could not settle plan {self.plan!r} for execution {self.execution_id}: {exc}")
            return None


def _sandbox(adapter: Adapter) -> bool:
    """Whether ``adapter`` bills compute at Modal's Sandbox rates (its ``compute_rates``)."""
    return adapter.compute_rates == "sandbox"
