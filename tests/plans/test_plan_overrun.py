"""Issue 10, defect 5: what a processor reports it cost is checked, and a cost above the
reservation is an explicit ``overrun`` on the ledger, in ``plan show`` and on the run.

The test processor ``test/reporter@1`` declares a fixed $1 (its reservation) and writes the
``THEORYX_RESULT`` file it is given, byte for byte: the reports below reach theoryx exactly as a
hostile or buggy processor would write them (``NaN``, ``1e308``, strings...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from notices_testing import captured_notices, texts
from plans_testing import db_of, prefix_totals_within_limit
from theoryx_testing import REPO, Cli, subprocess_env

import theoryx
from theoryx.budget import costs, ledger, plans, pricing
from theoryx.budget.money import MAX_REPORTED_MICROS, check_reported
from theoryx.errors import BudgetExceeded, LedgerCorrupt
from theoryx.spec.registry import load_file
from theoryx.store import executions
from theoryx.store.db import Database, pack, unpack

REF = "test/reporter@1"
RESERVED = 1_000_000          # the spec's cost.usd: $1
SPEC = f"""\
ref: {REF}
description: Writes the THEORYX_RESULT it is given (inputs.result, JSON text), for budget tests.
image:
  ref: example.invalid/reporter@sha256:{"0" * 64}
runtime: {{timeout: 60}}
cost: {{usd: 1}}
inputs:
  type: object
  properties:
    i: {{type: integer}}
    result: {{type: string}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
LLM_SPEC = f"""\
ref: test/tokens@1
description: An LLM-priced processor that reports token usage (inputs.result, JSON text).
image:
  ref: example.invalid/tokens@sha256:{"0" * 64}
runtime: {{timeout: 60}}
cost: {{llm: true}}
inputs:
  type: object
  properties:
    model: {{type: string, default: priced-model}}
    messages: {{type: array}}
    max_tokens: {{type: integer}}
    result: {{type: string}}
outputs:
  - {{path: out.txt, mime: text/plain}}
"""
MOCK = '''\
def run(inputs, outdir, ctx):
    (outdir / "out.txt").write_text("ok\\n")
    if "result" in inputs:
        ctx.workspace.result.write_text(inputs["result"])
'''
# $1 per 1M input tokens, $2 per 1M output tokens, at most 1000 output tokens
RATES = {"models": {"priced-model": {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002",
                                     "max_output_tokens": 1000}}}


@pytest.fixture
def reg(tmp_path: Path) -> Path:
    root = tmp_path / "reporters"
    for name, spec in (("reporter", SPEC), ("tokens", LLM_SPEC)):
        (root / "processors" / "test" / name).mkdir(parents=True)
        (root / "processors" / "test" / f"{name}@1.yaml").write_text(spec)
        (root / "processors" / "test" / name / "mock.py").write_text(MOCK)
    return root


@pytest.fixture(autouse=True)
def rates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THEORYX_RATES", json.dumps(RATES))


def report(home: Path, reg: Path, i: int, result: str, *, plan: str | None = "p",
           ref: str = REF, **inputs: Any) -> theoryx.RunResult:
    """One run whose processor writes ``result`` as its THEORYX_RESULT file."""
    return theoryx.run(ref, inputs={"i": i, "result": result, **inputs}, adapter="mock", plan=plan,
                       home=home, registry=str(reg))


def events(home: Path, key: str = "p") -> list[dict[str, Any]]:
    return [e for _, e in ledger.events(db_of(home), key)]


def limited(home: Path, reg: Path, limit_micros: int = 5_000_000) -> None:
    report(home, reg, -1, "{}", plan=None)                  # opens the home
    plans.create(db_of(home), "p", limit_micros)


def test_a_1000_dollar_report_under_a_1_dollar_reservation_is_an_explicit_overrun(home: Path, reg: Path) -> None:
    limited(home, reg)
    with captured_notices() as records:
        res = report(home, reg, 1, '{"cost_usd": 1000}')
    assert res.record.cost_micros == 1_000_000_000                         # charged what it cost
    _, reserve, settle, overrun = events(home)
    assert (reserve["kind"], reserve["amount_micros"]) == ("reserve", RESERVED)
    assert (settle["kind"], settle["amount_micros"], settle["released_micros"]) == ("settle", RESERVED, RESERVED)
    assert overrun["kind"] == "overrun" and overrun["execution_id"] == res.execution_id
    assert (overrun["amount_micros"], overrun["cost_micros"], overrun["reserved_micros"]) == (
        999_000_000, 1_000_000_000, RESERVED)
    warned = texts(records, "warning")
    assert any("cost $1000.000000, $999.000000 more than its reservation $1.000000" in w for w in warned), warned
    p = plans.get(db_of(home), "p")
    assert (p.totals.spent_micros, p.totals.overruns, p.totals.overrun_micros) == (1_000_000_000, 1, 999_000_000)
    assert p.remaining_micros == -995_000_000
    assert plans.verify(db_of(home), "p") == p.totals                   # the chain still verifies
    with pytest.raises(BudgetExceeded):                                  # and the limit holds from now on
        report(home, reg, 2, '{"cost_usd": 0}')
    cli = Cli(home, reg)
    shown = json.loads(cli("plan", "show", "p", "--json").stdout)
    assert (shown["overruns"], shown["overrun_micros"], shown["remaining_micros"]) == (1, 999_000_000, -995_000_000)
    human = cli("plan", "show", "p").stdout
    assert "overruns: $999.000000 (1 execution)" in human and "remaining: -$995.000000" in human
    verified = cli("plan", "ledger", "p", "--verify")
    assert verified.exit_code == 0 and "Verified: 4 events" in verified.stdout
    assert "overrun   " in verified.stdout and "beyond its reservation $1.000000" in verified.stdout
    print(f"$1000 report under a $1 reservation: charged {res.record.cost_micros} micro-USD, "
          f"events {[e['kind'] for e in events(home)]}, remaining {p.remaining_micros}")


def test_the_overrun_is_on_the_execution_record_and_the_json_envelope(home: Path, reg: Path) -> None:
    limited(home, reg)
    res = report(home, reg, 1, '{"cost_usd": 1000}')
    assert executions.get(db_of(home), res.execution_id).overrun_micros == 999_000_000
    assert res.to_json()["overrun_micros"] == 999_000_000
    body = Cli(home, reg).run_json("--adapter", "mock", "--ref", REF, "--plan", "q",
                                   "--inputs-json", json.dumps({"i": 2, "result": '{"cost_usd": 3}'}))
    assert body["overrun_micros"] == 2_000_000 and body["cost_micros"] == 3_000_000


def test_no_overrun_means_overrun_micros_zero_on_the_envelope(home: Path, reg: Path) -> None:
    limited(home, reg)
    res = report(home, reg, 1, '{"cost_usd": 0.5}')
    assert res.to_json()["overrun_micros"] == 0 and res.record.overrun_micros == 0
    assert [e["kind"] for e in events(home)] == ["create", "reserve", "settle"]


@pytest.mark.parametrize("text, why", [
    ('{"cost_usd": 1e308}', "is more than the $10000.000000 one execution may report"),
    ('{"cost_usd": NaN}', "is not a finite number"),
    ('{"cost_usd": Infinity}', "is not a finite number"),
    ('{"cost_usd": -1}', "is negative"),
    ('{"cost_usd": "0.5"}', "is not a number"),
    ('{"cost_usd": "abc"}', "is not a number"),
    ('{"cost_usd": true}', "is not a number"),
    ('{"cost_usd": [1]}', "is not a number"),
    ('{"cost_usd": 10000.000001}', "is more than the $10000.000000"),
])
def test_a_refused_report_is_charged_the_reservation_with_a_warning(home: Path, reg: Path, text: str,
                                                                    why: str) -> None:
    limited(home, reg)
    with captured_notices() as records:
        res = report(home, reg, 1, text)
    assert res.record.cost_micros == RESERVED, f"{text} charged {res.record.cost_micros} micro-USD"
    settle = events(home)[-1]
    assert settle["kind"] == "settle" and settle["amount_micros"] == RESERVED
    assert why in settle["refused"] and settle["refused"].startswith("cost_usd ")
    warned = texts(records, "warning")
    assert any("reported cost was refused" in w and why in w for w in warned), warned
    p = plans.get(db_of(home), "p").totals
    assert (p.spent_micros, p.overruns) == (RESERVED, 0)
    assert plans.verify(db_of(home), "p") == p
    print(f"report {text}: charged {res.record.cost_micros} micro-USD (the reservation)")


def test_a_report_of_exactly_the_cap_is_accepted_as_an_overrun(home: Path, reg: Path) -> None:
    limited(home, reg, limit_micros=20_000 * 1_000_000)
    res = report(home, reg, 1, json.dumps({"cost_usd": MAX_REPORTED_MICROS / 1_000_000}))
    assert res.record.cost_micros == MAX_REPORTED_MICROS
    assert events(home)[-1]["amount_micros"] == MAX_REPORTED_MICROS - RESERVED


def test_without_a_plan_a_refused_report_costs_the_worst_case_and_null_is_no_report(home: Path, reg: Path) -> None:
    assert report(home, reg, 1, '{"cost_usd": 1e308}', plan=None).record.cost_micros == RESERVED
    assert report(home, reg, 2, '{"cost_usd": null}', plan=None).record.cost_micros == RESERVED   # declared
    assert report(home, reg, 3, '{"cost_usd": 0.25}', plan=None).record.cost_micros == 250_000


def test_refused_token_usage_is_charged_the_reservation(home: Path, reg: Path) -> None:
    limited(home, reg)
    base: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    spec = load_file(reg / "processors" / "test" / "tokens@1.yaml")
    text = json.dumps({"usage": {"prompt_tokens": 10, "completion_tokens": 100}})
    good = report(home, reg, 1, text, ref="test/tokens@1", **base)
    est = costs.estimate(spec, {"i": 1, "result": text, **base}, bills_compute=False, rates=pricing.load_rates())
    assert good.record.cost_micros == 10 + 200 <= est.micros == events(home)[-2]["amount_micros"]
    for i, usage in enumerate(({"prompt_tokens": -5, "completion_tokens": 1},
                               {"prompt_tokens": 1.5, "completion_tokens": 1},
                               {"prompt_tokens": 10**16, "completion_tokens": 0}), start=2):
        res = report(home, reg, i, json.dumps({"usage": usage}), ref="test/tokens@1", **base)
        reserve, settle = events(home)[-2:]
        assert res.record.cost_micros == reserve["amount_micros"] == settle["amount_micros"], usage
        assert "usage" in settle["refused"]
    assert plans.verify(db_of(home), "p").overruns == 0


def test_check_reported_accepts_only_finite_non_negative_numbers_up_to_the_cap() -> None:
    assert check_reported(None).micros is None and check_reported(None).refused is None
    assert check_reported(0).micros == 0 and check_reported(0.1).micros == 100_000
    assert check_reported(1e-9).micros == 1                               # rounded up, never down
    for bad in (float("nan"), float("inf"), -0.5, "1", True, 1e308, 10**30, {"usd": 1}):
        assert check_reported(bad).micros is None and check_reported(bad).refused, bad


# -- the ledger ---------------------------------------------------------------------------------

def test_a_tampered_overrun_is_detected(home: Path, reg: Path) -> None:
    limited(home, reg)
    report(home, reg, 1, '{"cost_usd": 3}')
    db = db_of(home)
    seq = plans.get(db, "p").totals.events - 1
    assert events(home)[seq]["kind"] == "overrun"

    def rewrite(change: Any) -> None:
        """Edit the overrun and re-hash it (a writer who knows the format), head and totals too."""
        def fn(txn: Any) -> None:
            k = ledger.event_key("p", seq).encode()
            event = unpack(txn.get(k, db=db.dbs["ledger"]))
            change(event)
            event["hash"] = ledger.event_hash(event)
            txn.put(k, pack(event), db=db.dbs["ledger"])
        db.write(fn)

    original = events(home)[seq]
    rewrite(lambda e: e.update(amount_micros=1))                          # cost no longer adds up
    with pytest.raises(LedgerCorrupt, match="do not add up with its settle"):
        ledger.replay("p", iter(ledger.events(db, "p")))
    rewrite(lambda e: e.update(original, kind="overrun", execution_id="01somebodyelse0000000000000"))
    with pytest.raises(LedgerCorrupt, match="must follow the settle of its execution"):
        ledger.replay("p", iter(ledger.events(db, "p")))


def _fill(db: Database) -> None:
    """An old-style ledger: a settle that spent more than it released, no overrun event."""
    plans.create(db, "old", None)
    plans.reserve(db, "old", "01old00000000000000000000a", 100, lease=Path("/nonexistent"))

    def fn(txn: Any) -> None:
        t = plans._Txn(db, txn)
        plan = t.plan("old")
        assert plan is not None
        plan = t.append(plan, "settle", execution_id="01old00000000000000000000a", amount_micros=500,
                        released_micros=100, status="success")
        reservation = t.reservation("01old00000000000000000000a")
        assert reservation is not None
        t.close(reservation)
    db.write(fn)


def test_ledgers_from_before_overrun_events_still_verify(tmp_path: Path) -> None:
    from theoryx.store.db import open_db

    db = open_db(tmp_path / "db")
    _fill(db)
    totals = plans.verify(db, "old")
    assert (totals.spent_micros, totals.overruns) == (500, 0)


# -- racing runs --------------------------------------------------------------------------------

PROCESSES = 6
RUNS = 6
LIMIT = 20_000_000            # $20: twenty $1 reservations
WORKER = """
import json, sys, time
from pathlib import Path
import theoryx
from theoryx.errors import TheoryxError

home, registry, worker, runs, go = sys.argv[1:]
reports = ['{"cost_usd": 0.5}', '{"cost_usd": 6}', '{"cost_usd": NaN}', '{"cost_usd": 1e308}',
           '{"cost_usd": 1}', '{"cost_usd": -3}']
while not Path(go).exists():
    time.sleep(0.001)
for j in range(int(runs)):
    try:
        r = theoryx.run("test/reporter@1", inputs={"i": int(worker) * 1000 + j,
                        "result": reports[(int(worker) + j) % len(reports)]},
                        adapter="mock", plan="race", home=home, registry=registry)
        print(json.dumps({"ok": True, "cost": r.record.cost_micros}), flush=True)
    except TheoryxError as exc:
        print(json.dumps({"ok": False, "code": exc.code}), flush=True)
"""


@pytest.mark.slow
def test_racing_processes_never_exceed_the_limit_except_by_recorded_overruns(
    home: Path, reg: Path, tmp_path: Path
) -> None:
    limited_home = home
    report(limited_home, reg, -1, "{}", plan=None)
    plans.create(db_of(home), "race", LIMIT)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), str(reg), str(w), str(RUNS), str(go)],
                              env=subprocess_env(home, THEORYX_RATES=json.dumps(RATES)), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for w in range(PROCESSES)]
    go.touch()
    lines: list[dict[str, Any]] = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        lines += [json.loads(line) for line in out.splitlines()]
    assert len(lines) == PROCESSES * RUNS
    admitted = [r for r in lines if r["ok"]]
    assert {r["code"] for r in lines if not r["ok"]} <= {"ERR_BUDGET_EXCEEDED"}
    db = db_of(home)
    log = [e for _, e in ledger.events(db, "race")]
    assert prefix_totals_within_limit(log)           # overshoot never beyond the recorded overruns
    spent = reserved = overrun = peak_overshoot = peak_unexplained = 0
    for e in log:
        spent += e["amount_micros"] if e["kind"] in ("settle", "overrun") else 0
        reserved += {"reserve": e.get("amount_micros", 0), "settle": -e.get("released_micros", 0)}.get(e["kind"], 0)
        overrun += e["amount_micros"] if e["kind"] == "overrun" else 0
        peak_overshoot = max(peak_overshoot, spent + reserved - LIMIT)
        peak_unexplained = max(peak_unexplained, spent + reserved - LIMIT - overrun)
    assert peak_unexplained <= 0
    totals = plans.verify(db, "race")
    assert totals == plans.get(db, "race").totals and totals.reserved_micros == 0
    overrun_events = [e for e in log if e["kind"] == "overrun"]
    assert totals.overruns == len(overrun_events) == sum(r["cost"] == 6_000_000 for r in admitted)
    assert totals.spent_micros == sum(r["cost"] for r in admitted)
    assert totals.spent_micros <= LIMIT + totals.overrun_micros
    assert all(r["cost"] in (500_000, 6_000_000, RESERVED) for r in admitted)   # 1e308, NaN, -3: the $1
    print(f"{PROCESSES} processes x {RUNS} runs on a ${LIMIT // 1_000_000} plan: {len(admitted)} admitted, "
          f"{len(lines) - len(admitted)} refused, spent {totals.spent_micros} micro-USD of which "
          f"{totals.overrun_micros} in {totals.overruns} recorded overruns; peak spent+reserved beyond the "
          f"limit {max(peak_overshoot, 0)} micro-USD, beyond the limit plus recorded overruns {peak_unexplained}")


# -- the estimates are upper bounds -------------------------------------------------------------

def test_max_tokens_true_is_not_a_one_token_bound(reg: Path) -> None:
    spec = load_file(reg / "processors" / "test" / "tokens@1.yaml")
    rates = pricing.load_rates()
    body = {"messages": [{"role": "user", "content": "hi"}]}
    as_bool = costs.estimate(spec, {**body, "max_tokens": True}, bills_compute=False, rates=rates)
    unbounded = costs.estimate(spec, body, bills_compute=False, rates=rates)     # the model's 1000 tokens
    assert as_bool.micros >= unbounded.micros >= 1000 * 2
    print(f"max_tokens true: estimate {as_bool.micros} micro-USD (the model's maximum output)")


def test_per_second_cost_is_charged_at_most_for_the_timeout_it_was_estimated_for(reg: Path) -> None:
    from dataclasses import replace
    from decimal import Decimal

    spec = replace(load_file(reg / "processors" / "test" / "reporter@1.yaml"), cost={"per_second_usd": 0.001})
    rates = pricing.load_rates()
    est = costs.estimate(spec, {}, bills_compute=False, rates=rates, timeout=Decimal(60))
    # the adapter's duration includes its own start and stop: 75 s for a run killed at 60 s
    late = costs.actual(spec, {}, {}, 75_000, bills_compute=False, rates=rates, timeout=Decimal(60))
    assert late.micros == est.micros == 60_000
    early = costs.actual(spec, {}, {}, 2_500, bills_compute=False, rates=rates, timeout=Decimal(60))
    assert early.micros == 2_500
