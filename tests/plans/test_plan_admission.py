"""Admission, settlement and hits through the Python API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from notices_testing import captured_notices, texts
from plans_testing import ESTIMATE, db_of, run_costly
from theoryx_testing import HELLO, REGISTRY

import theoryx
from cas import Store
from theoryx.budget import ledger, plans
from theoryx.errors import BudgetExceeded, PriceUnknown, ProcessorFailed
from theoryx.store import executions, receipts


def events(home: Path, key: str = "p") -> list[dict[str, object]]:
    return [e for _, e in ledger.events(db_of(home), key)]


def receipt(home: Path, res: theoryx.RunResult) -> dict[str, object]:
    if res.record.receipt_cid is None:       # a hit's receipt is derived from its record, not stored
        derived: dict[str, object] = json.loads(receipts.receipt_bytes(res.record))
        return derived
    body: dict[str, object] = json.loads(Store(home / "cas-v1").read(res.record.receipt_cid))
    return body


def test_reservation_refused_when_limit_would_be_exceeded(home: Path, registry: Path) -> None:
    run_costly(home, registry, 0, plan=None)   # opens the home
    plans.create(db_of(home), "p", 400_000)
    run_costly(home, registry, 1)
    with pytest.raises(BudgetExceeded) as info:
        run_costly(home, registry, 2)
    rec = executions.get(db_of(home), info.value.execution_id or "")
    assert rec.status == "error" and rec.error and rec.error["code"] == "ERR_BUDGET_EXCEEDED"
    assert rec.stdout_cid is None and rec.cost_micros == 0
    p = plans.get(db_of(home), "p")
    assert (p.totals.spent_micros, p.totals.reserved_micros, p.totals.executions) == (ESTIMATE, 0, 1)


def test_exactly_the_limit_is_admitted(home: Path, registry: Path) -> None:
    run_costly(home, registry, 0, plan=None)
    plans.create(db_of(home), "p", 2 * ESTIMATE)
    run_costly(home, registry, 1)
    run_costly(home, registry, 2)
    assert plans.get(db_of(home), "p").remaining_micros == 0


def test_actual_cost_below_the_estimate_is_what_is_charged(home: Path, registry: Path) -> None:
    res = run_costly(home, registry, 1, cost_usd=0.1)
    assert res.record.cost_micros == 100_000
    p = plans.get(db_of(home), "p")
    assert (p.totals.spent_micros, p.totals.reserved_micros) == (100_000, 0)
    reserve, settle = events(home)[1:]
    assert reserve["amount_micros"] == ESTIMATE and reserve["estimate"] == {"fixed": ESTIMATE}
    assert settle["amount_micros"] == 100_000 and settle["released_micros"] == ESTIMATE


def test_a_processor_without_a_reported_cost_is_charged_its_declared_cost(home: Path, registry: Path) -> None:
    res = theoryx.run("test/costly@1", inputs={"i": 1}, adapter="mock", plan="p", home=home, registry=str(registry))
    assert res.record.cost_micros == ESTIMATE == plans.get(db_of(home), "p").totals.spent_micros


def test_failed_execution_settles_what_it_actually_cost(home: Path, registry: Path) -> None:
    with pytest.raises(ProcessorFailed) as info:
        run_costly(home, registry, 1, cost_usd=0.05, adapter_options={"exit_code": 3})
    rec = executions.get(db_of(home), info.value.execution_id or "")
    assert rec.cost_micros == 50_000
    p = plans.get(db_of(home), "p")
    assert (p.totals.spent_micros, p.totals.reserved_micros) == (50_000, 0)
    assert events(home)[-1]["status"] == "error"


def test_hits_cost_nothing_and_record_the_savings(home: Path, registry: Path) -> None:
    first = run_costly(home, registry, 1, cost_usd=0.2)
    hit = run_costly(home, registry, 1, cost_usd=0.2)
    again = run_costly(home, registry, 1, plan="other")
    assert hit.cache == again.cache == "hit"
    assert (hit.record.cost_micros, hit.record.saved_micros) == (0, 200_000)
    p = plans.get(db_of(home), "p")
    t = p.totals
    assert (t.spent_micros, t.hits, t.saved_micros, t.executions) == (200_000, 1, 200_000, 1)
    assert events(home)[-1] == {**events(home)[-1], "kind": "hit", "execution_id": hit.execution_id,
                                "saved_micros": 200_000, "source_execution": first.execution_id}
    other = plans.get(db_of(home), "other")
    assert (other.totals.spent_micros, other.totals.saved_micros, other.totals.executions) == (0, 200_000, 0)
    body = receipt(home, hit)
    assert (body["plan"], body["charged_micros"], body["saved_micros"]) == ("p", 0, 200_000)


def test_receipt_names_the_plan_and_the_charged_amount(home: Path, registry: Path) -> None:
    res = run_costly(home, registry, 1, cost_usd=0.125)
    body = receipt(home, res)
    assert (body["plan"], body["charged_micros"], body["cost_micros"]) == ("p", 125_000, 125_000)
    unplanned = receipt(home, run_costly(home, registry, 2, plan=None, cost_usd=0.125))
    assert (unplanned["plan"], unplanned["charged_micros"], unplanned["cost_micros"]) == (None, 0, 125_000)


def test_settle_is_idempotent_per_execution(home: Path, registry: Path) -> None:
    res = run_costly(home, registry, 1)
    db = db_of(home)
    before = plans.get(db, "p")
    assert plans.settle(db, res.execution_id, 999_999, status="success") is None
    assert plans.get(db, "p") == before
    plans.verify(db, "p")


def test_plan_show_totals_equal_the_ledger_sums(home: Path, registry: Path) -> None:
    run_costly(home, registry, 0, plan=None)
    plans.create(db_of(home), "p", 800_000)
    for i, cost in enumerate((0.1, 0.25, 0.2, 0.1), start=10):
        run_costly(home, registry, i, cost_usd=cost)
    run_costly(home, registry, 11)                                 # hit
    with pytest.raises(BudgetExceeded):
        run_costly(home, registry, 9)
    evs = events(home)
    p = plans.get(db_of(home), "p")
    assert p.totals.spent_micros == sum(int(str(e["amount_micros"])) for e in evs if e["kind"] == "settle")
    assert p.totals.saved_micros == sum(int(str(e["saved_micros"])) for e in evs if e["kind"] == "hit")
    assert p.totals.spent_micros == 650_000 and p.totals.reserved_micros == 0
    assert plans.verify(db_of(home), "p") == p.totals


def test_unknown_model_under_a_limited_plan_is_price_unknown(home: Path) -> None:
    inputs = {"model": "no-such-model-anywhere", **HELLO, "max_tokens": 10}
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    plans.create(db_of(home), "limited", 1_000_000)
    with pytest.raises(PriceUnknown) as info:
        theoryx.run("llm/litellm@1", inputs=inputs, adapter="mock", plan="limited", home=home, registry=str(REGISTRY))
    assert info.value.code == "ERR_PRICE_UNKNOWN" and "no-such-model-anywhere" in info.value.message
    assert plans.get(db_of(home), "limited").totals.executions == 0


def test_unknown_model_under_a_tracking_plan_is_admitted_with_a_note(home: Path) -> None:
    inputs = {"model": "no-such-model-anywhere", **HELLO}
    with captured_notices() as seen:     # a note reaches a Python caller as a log record
        theoryx.run("llm/litellm@1", inputs=inputs, adapter="mock", plan="tracking", home=home,
                    registry=str(REGISTRY))
    err = "\n".join(texts(seen, "note"))
    assert "no price for model 'no-such-model-anywhere'" in err and "$0" in err
    evs = events(home, "tracking")
    assert evs[1]["kind"] == "reserve" and evs[1]["amount_micros"] == 0


def test_llm_estimate_uses_max_tokens(home: Path) -> None:
    """gpt-4o-mini: 1000 micro-USD admits a 100-token answer, not the model's 16,384 maximum."""
    theoryx.run("llm/litellm@1", inputs=HELLO, adapter="mock", home=home, registry=str(REGISTRY))
    plans.create(db_of(home), "small", 1_000)
    bounded = {**HELLO, "model": "gpt-4o-mini", "max_tokens": 100, "temperature": 0.5}
    theoryx.run("llm/litellm@1", inputs=bounded, adapter="mock", plan="small", home=home, registry=str(REGISTRY))
    reserve = events(home, "small")[1]
    assert 100 * 0.6 <= int(str(reserve["amount_micros"])) < 1_000
    with pytest.raises(BudgetExceeded) as info:
        theoryx.run("llm/litellm@1", inputs={**HELLO, "model": "gpt-4o-mini"}, adapter="mock", plan="small",
                home=home, registry=str(REGISTRY))
    assert "estimate $0.0098" in info.value.message     # 16384 output tokens x $0.6/M dominate


def test_the_hit_path_with_a_plan_imports_no_pricing(home: Path, registry: Path) -> None:
    import subprocess
    import sys

    from theoryx_testing import REPO, subprocess_env

    run_costly(home, registry, 1)
    probe = ("import json, sys\n"
             "import theoryx\n"
             f"r = theoryx.run('test/costly@1', inputs={{'i': 1}}, adapter='mock', plan='p', home={str(home)!r},"
             f" registry={str(registry)!r})\n"
             "mods = sorted(m for m in sys.modules if m.split('.')[0] in ('litellm', 'yaml', 'jsonschema')"
             " or m in ('theoryx.budget.pricing', 'theoryx.budget.costs'))\n"
             "print(json.dumps([r.cache, mods]))\n")
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env(home), cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == ["hit", []]
    assert plans.get(db_of(home), "p").totals.hits == 1


def test_an_adapter_that_bills_compute_is_reserved_and_charged_for_it(
    home: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace as dc_replace
    from decimal import Decimal
    from math import ceil

    from theoryx import adapters
    from theoryx.adapters.mock import MockAdapter

    class Billing(MockAdapter):
        bills_compute = True
        billing_margin_s = 40

        def execute(self, request: Any) -> Any:
            return dc_replace(super().execute(request), meta={"compute_seconds": 12.5})

    real = adapters.get
    monkeypatch.setattr(adapters, "get", lambda name, **kw: Billing() if name == "mock" else real(name, **kw))
    res = run_costly(home, registry, 1, cost_usd=0.1, adapter_options={"timeout": 20})
    per_second = Decimal("0.0000131") + Decimal("0.00000222")            # 1 core, 1 GiB (the defaults)
    reserve, settle = events(home)[1:]
    assert reserve["estimate"] == {"fixed": ESTIMATE, "compute": ceil(per_second * 60 * 1_000_000)}
    assert settle["amount_micros"] == res.record.cost_micros == 100_000 + ceil(per_second * Decimal("12.5") * 10**6)
