"""``theoryx plan create|show|ls|set-limit|ledger|reconcile``: budgets and their ledgers.

Money is stored as integer micro-USD (the ``*_micros`` fields of ``--json``) and shown as dollars.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from theoryx.budget.money import dollars, parse_usd
from theoryx.cli.state import State
from theoryx.errors import LedgerCorrupt


@click.group(name="plan")
def plan() -> None:
    """Budgets: limits, spending, reservations and an auditable ledger per plan."""


def _limit(text: str | None, what: str) -> int | None:
    if text is None or text.strip().lower() in ("none", "unlimited"):
        return None
    return parse_usd(text, what)


def _money(micros: int | None) -> str:
    return "none" if micros is None else dollars(micros)


def _show(p: Any) -> None:
    t = p.totals
    rows = [
        ("plan", p.key), ("limit", _money(t.limit_micros)), ("spent", dollars(t.spent_micros)),
        ("reserved", dollars(t.reserved_micros)), ("remaining", _money(p.remaining_micros)),
        ("executions", str(t.executions)), ("cache hits", str(t.hits)),
        ("saved", dollars(t.saved_micros)),
        # charged beyond reservations (part of spent): what processors reported above their
        # spec's worst case, or compute billed beyond the timeout
        ("overruns", f"{dollars(t.overrun_micros)} ({t.overruns} execution{'' if t.overruns == 1 else 's'})"),
        ("events", str(t.events)),
    ]
    for k, v in rows:
        click.echo(f"{k:>10}: {v}")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, sort_keys=True))


@plan.command()
@click.argument("key")
@click.option("--limit-usd", metavar="X", help="Limit in dollars (e.g. 5 or 12.50); none = tracking only.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.pass_obj
def create(state: State, key: str, limit_usd: str | None, as_json: bool) -> None:
    """Create plan KEY, with a limit or (without --limit-usd) for tracking only."""
    from theoryx.budget import plans

    plans.check_key(key)         # a bad key or amount is refused before the home is created
    limit = _limit(limit_usd, "--limit-usd")
    p = plans.create(state.stores().db, key, limit)
    if as_json:
        _echo_json(p.to_json())
        return
    click.echo(f"Created plan {p.key!r} with limit {_money(p.limit_micros)}")


@plan.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.pass_obj
def show(state: State, key: str, as_json: bool) -> None:
    """Show a plan: limit, spent, reserved, remaining, executions, cache hits, money saved, and
    overruns (charged beyond a reservation: part of spent)."""
    from theoryx.budget import plans

    p = plans.get(state.stores(create=False).db, key)
    if as_json:
        _echo_json(p.to_json())
    else:
        _show(p)


@plan.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of plans.")
@click.pass_obj
def ls_cmd(state: State, as_json: bool) -> None:
    """List every plan."""
    from theoryx.budget import plans

    all_plans = plans.all_plans(state.stores(create=False).db)
    if as_json:
        _echo_json([p.to_json() for p in all_plans])
        return
    if not all_plans:
        click.echo("No plans yet; create one with `theoryx plan create KEY --limit-usd X`")
        return
    width = max(24, *(len(p.key) for p in all_plans))     # a key may have 128 characters
    click.echo(f"{'PLAN':<{width}} {'LIMIT':>16} {'SPENT':>16} {'RESERVED':>16} {'REMAINING':>16}")
    for p in all_plans:
        t = p.totals
        click.echo(f"{p.key:<{width}} {_money(t.limit_micros):>16} {dollars(t.spent_micros):>16} "
                   f"{dollars(t.reserved_micros):>16} {_money(p.remaining_micros):>16}")


@plan.command(name="set-limit", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("limit")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.pass_obj
def set_limit(state: State, key: str, limit: str, as_json: bool) -> None:
    """Set plan KEY's limit to LIMIT dollars, or remove it with `none`."""
    from theoryx.budget import plans

    p = plans.set_limit(state.stores(create=False).db, key, _limit(limit, "limit"))
    if as_json:
        _echo_json(p.to_json())
        return
    click.echo(f"Plan {p.key!r}: limit {_money(p.limit_micros)}")
    if p.remaining_micros is not None and p.remaining_micros < 0:
        click.echo(f"Note: spent and reserved exceed the new limit by {dollars(-p.remaining_micros)}; "
                   "new runs are refused", err=True)


def _event_line(e: Any) -> str:
    """One event as a line; a damaged one (a field missing or of the wrong type) as what it is,
    so that the listing still shows every event (`--verify` says what is wrong)."""
    try:
        return _event_text(e)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        seq = e.get("seq") if isinstance(e, dict) else None
        return f"{seq!s:>6} damaged event (see --verify): {json.dumps(e, sort_keys=True, default=repr)}"


def _event_text(e: dict[str, Any]) -> str:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["at_ms"] / 1000))
    kind = e["kind"]
    if kind in ("create", "set-limit"):
        detail = f"limit {_money(e.get('limit_micros'))}"
    elif kind == "reserve":
        detail = f"{e['execution_id']} reserve {dollars(e['amount_micros'])}"
    elif kind == "settle":
        detail = (f"{e['execution_id']} charge {dollars(e['amount_micros'])}, "
                  f"release {dollars(e['released_micros'])} ({e.get('status')})")
        if e.get("refused"):
            detail += f"; reported cost refused: {e['refused']}"
    elif kind == "overrun":
        detail = (f"{e['execution_id']} charge {dollars(e['amount_micros'])} beyond its reservation "
                  f"{dollars(e['reserved_micros'])} (cost {dollars(e['cost_micros'])})")
    elif kind == "release":
        detail = f"{e['execution_id']} release {dollars(e['amount_micros'])} ({e.get('reason')})"
    else:
        detail = f"{e['execution_id']} saved {dollars(e['saved_micros'])}"
    return f"{e['seq']:>6} {at} {kind:<9} {detail}"


@plan.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help='One JSON object: {"plan", "events": [...]}.')
@click.option("--verify", is_flag=True, help="Check the hash chain and the totals; exit 1 if tampered.")
@click.pass_obj
def ledger(state: State, key: str, as_json: bool, verify: bool) -> None:
    """Print plan KEY's ledger (oldest first); --verify detects edited, removed or reordered events."""
    from theoryx.budget import ledger as ledger_mod
    from theoryx.budget import plans

    db = state.stores(create=False).db
    p = plans.get(db, key)
    events = [e for _, e in ledger_mod.events(db, p.key)]
    totals = None
    try:
        if verify:
            totals = plans.verify(db, p.key)
    except LedgerCorrupt as exc:
        if as_json:
            _echo_json({"plan": p.key, "verified": False, "error": exc.to_dict(), "events": events})
            exc.reported = True
        raise
    if as_json:
        body: dict[str, Any] = {"plan": p.key, "events": events}
        if totals is not None:
            body.update(verified=True, head=totals.head)
        _echo_json(body)
        return
    for e in events:
        click.echo(_event_line(e))
    if totals is not None:
        click.echo(f"Verified: {totals.events} events, chain intact, totals match (head {totals.head})")


@plan.command()
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print what was released as one JSON object.")
@click.pass_obj
def reconcile(state: State, key: str, as_json: bool) -> None:
    """Release reservations of plan KEY whose run is gone (killed before settling); never charges."""
    from theoryx.budget import plans

    stores = state.stores(create=False)
    done = plans.reconcile(stores.db, key, stores.home.leases)
    if as_json:
        _echo_json({
            "plan": done.plan.to_json(),
            "released": [r.to_dict() for r in done.released],
            "held": [r.to_dict() for r in done.held],
        })
        return
    for r in done.released:
        click.echo(f"released {r.execution_id} {dollars(r.amount_micros)} (its run is gone)")
    freed = sum(r.amount_micros for r in done.released)
    click.echo(f"Released {len(done.released)} reservation(s) ({dollars(freed)}); "
               f"{len(done.held)} held by running executions")


COMMANDS: list[click.Command] = [plan]
