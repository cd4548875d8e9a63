"""Store lifecycle: ``gc``, ``verify``, ``pin``, ``unpin``, ``pins``, ``du``, ``stats``.

Exit codes: 0 done (verify: clean), 1 a theoryx error (``ERR_STORE_BUSY`` while another gc or
verify holds the store) or, for verify, a store that is not clean; 2 a bad option value.
With ``--json`` exactly one JSON object goes to stdout, errors included. A progress bar is drawn
on stderr only when stderr is a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from theoryx.cli import messages
from theoryx.cli.output import dollars
from theoryx.cli.state import State
from theoryx.core.durations import human_bytes, human_duration, parse_duration, parse_size
from theoryx.errors import TheoryxError, UsageError

T = TypeVar("T")
ProgressFn = Callable[[str, int, "int | None"], None]

_LABELS = {"size": "measuring the store", "sweep": "sweeping blobs", "purge": "deleting",
           "verify": "rehashing blobs"}


@contextmanager
def _progress() -> Iterator[ProgressFn | None]:
    """A rich progress bar on a terminal (rich is imported only then); None elsewhere."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:

        def update(phase: str, done: int, total: int | None) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_LABELS.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def _guard(as_json: bool, fn: Callable[[], T]) -> T:
    """Run ``fn``; with ``--json`` an error is also printed as ``{"status": "error", ...}``."""
    try:
        return fn()
    except TheoryxError as exc:
        if as_json:
            click.echo(json.dumps(exc.envelope(messages.to_dict(exc))))
            exc.reported = True
        raise


def _n(count: int) -> str:
    return f"{count:,}"


def _blobs(t: Any) -> str:
    return f"{_n(t.count)} blob{'s' if t.count != 1 else ''} ({human_bytes(t.bytes)})"


@click.command()
@click.option("--dry-run", is_flag=True, help="Decide and report, delete nothing.")
@click.option("--max-age", metavar="DUR",
              help="First drop cache entries and execution records unused for DUR (30m, 7d).")
@click.option("--max-size", metavar="SIZE",
              help="Then evict least recently used cache entries until the store fits SIZE (500M, 2G).")
@click.option("--grace", metavar="DUR", default="1h", show_default=True,
              help="Never delete a blob written or used more recently than this.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def gc(state: State, dry_run: bool, max_age: str | None, max_size: str | None, grace: str, as_json: bool) -> None:
    """Delete blobs that no cache entry, pinned execution or run in flight needs."""
    from theoryx.store.gc.collect import collect

    def go() -> Any:
        grace_s = parse_duration(grace)
        age_s = parse_duration(max_age) if max_age is not None else None
        size = parse_size(max_size) if max_size is not None else None
        with _progress() as progress:
            return collect(state.stores(create=False), dry_run=dry_run, grace_s=grace_s, max_age_s=age_s,
                           max_size=size, progress=progress)

    report = _guard(as_json, go)
    if as_json:
        click.echo(json.dumps({"status": "success", **report.to_dict()}))
        return
    head = "gc (dry run: nothing was deleted)" if dry_run else "gc"
    verb = "would reclaim" if dry_run else "reclaimed"
    click.echo(f"{head}: examined {_blobs(report.examined)}; kept {_blobs(report.kept)}; "
               f"{verb} {_blobs(report.reclaimed)} in {report.seconds:.1f} s")
    click.echo(f"  kept: {_n(report.kept_live.count)} live, {_n(report.kept_leased.count)} leased by runs in "
               f"flight, {_n(report.kept_young.count)} younger than {human_duration(report.grace_s)}, "
               f"{_n(report.restored.count)} put back (needed again during the gc)")
    evicted = []
    if report.max_age_s is not None:
        evicted.append(f"{report.entries_evicted_by_age} unused for {human_duration(report.max_age_s)}")
    if report.max_size is not None:
        evicted.append(f"{report.entries_evicted_by_size} to fit {human_bytes(report.max_size)}")
    evict = "would evict" if dry_run else "evicted"
    click.echo(f"  cache entries: {_n(report.entries)}" + (f", {evict} {', '.join(evicted)}" if evicted else ""))
    if report.max_age_s is not None:
        drop = "would drop" if dry_run else "dropped"
        click.echo(f"  execution records: {_n(report.records)}, {drop} {_n(report.records_dropped)}")
    if report.fits is False:
        click.echo(f"  note: pinned, leased and young blobs keep the store above {human_bytes(report.max_size or 0)}")
    extras = [(report.temp_files.count, f"temp files {'to remove' if dry_run else 'removed'}: "
               f"{_n(report.temp_files.count)} ({human_bytes(report.temp_files.bytes)})"),
              (report.stale_leases, f"stale leases: {report.stale_leases}"),
              (report.workspaces.count, f"workspaces of killed runs {'to remove' if dry_run else 'removed'}: "
               f"{_n(report.workspaces.count)} ({human_bytes(report.workspaces.bytes)})"),
              (report.lease_temp_files, f"lease temp files of killed runs: {report.lease_temp_files}"),
              (report.recovered, f"put back from an interrupted gc: {report.recovered}")]
    for count, text in extras:
        if count:
            click.echo(f"  {text}")


@click.command()
@click.option("--repair", is_flag=True,
              help="Remove corrupt blobs and the cache entries that need them; empty the quarantine.")
@click.option("--workers", type=click.IntRange(min=1), help="Hashing threads (default: one per core).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def verify(state: State, repair: bool, workers: int | None, as_json: bool) -> None:
    """Rehash every blob and check what the cache and receipts name; exit 1 unless clean."""
    from theoryx.store.verify import verify as run_verify

    def go() -> Any:
        with _progress() as progress:
            return run_verify(state.stores(create=False), repair=repair, workers=workers, progress=progress)

    report = _guard(as_json, go)
    if as_json:
        click.echo(json.dumps({"status": "success", **report.to_dict()}))
    else:
        _print_verify(report)
    if not report.clean:
        sys.exit(1)


def _print_verify(report: Any) -> None:
    rate = report.checked.bytes / report.hash_seconds / 2**20 if report.hash_seconds else 0.0
    click.echo(f"verify: rehashed {_blobs(report.checked)} in {report.hash_seconds:.1f} s ({rate:.0f} MiB/s); "
               f"{report.seconds:.1f} s in all")
    for p in report.corrupt + report.missing:
        size = f" ({human_bytes(p.size)})" if p.size is not None else ""
        needed = f"; needed by {', '.join(sorted(p.needed_by))}" if p.needed_by else "; needed by nothing"
        click.echo(f"  {p.kind:<8} {p.cid}{size}{needed}")
    for memo_key in report.broken_entries:
        click.echo(f"  broken cache entry {memo_key}" + (" (removed)" if report.repair else ""))
    for exec_id in report.broken_pins:
        click.echo(f"  broken pinned execution {exec_id} (re-run it, or `theoryx unpin {exec_id}`)")
    click.echo(f"  orphaned: {_blobs(report.orphaned)} nothing live names (gc reclaims them), "
               f"{report.temp_files} temp files, {report.stale_leases} stale leases, "
               f"{report.withdrawn} withdrawn by an interrupted gc, {report.orphaned_paths} world paths "
               f"and {report.orphaned_pins} pins of unknown executions")
    ws = report.abandoned_workspaces
    if ws.count or report.lease_temp_files:
        click.echo(f"  left by killed runs: {_n(ws.count)} workspaces ({human_bytes(ws.bytes)}), "
                   f"{report.lease_temp_files} lease temp files (`theoryx gc` removes them)")
    for q in report.quarantined:
        click.echo(f"  quarantined {q['cid']} ({human_bytes(q['size'])}): found corrupt when read; {q['file']}"
                   + (" (removed)" if report.repair else ""))
    click.echo(f"  pruned executions (blobs removed by gc): {report.pruned_executions}")
    if report.repair:
        click.echo(f"  repaired: removed {report.removed_blobs} corrupt blobs and {report.removed_entries} "
                   f"cache entries, put back {report.reinstated} withdrawn blobs, removed "
                   f"{report.unquarantined} quarantined copies")
    if report.clean:
        click.echo("clean")
    else:
        hint = "" if report.repair else "; `theoryx verify --repair` removes them so the next run re-executes"
        click.echo(f"NOT clean: {len(report.corrupt)} corrupt, {len(report.missing)} missing{hint}")


@click.command()
@click.argument("execution")
@click.option("--note", default="", help="Why it is pinned (shown by `theoryx pins`).")
@click.pass_obj
def pin(state: State, execution: str, note: str) -> None:
    """Keep EXECUTION's blobs (and the record) whatever gc is asked to drop."""
    from theoryx.store import executions, pins

    if not note.isprintable():     # also rejects bytes that were not UTF-8 (lone surrogates)
        raise UsageError("--note must be printable UTF-8 text on one line")
    stores = state.stores(create=False)
    p = pins.pin(stores.db, execution, note)
    rec = executions.get(stores.db, p.execution_id)
    gone = sorted({c for c in rec.blobs() if not stores.cas.exists(c)})
    click.echo(f"Pinned {p.execution_id}")
    if gone:
        click.echo(f"Warning: {len(gone)} of its blobs were already pruned; pinning cannot bring them back "
                   f"(re-run it to recompute them)", err=True)


@click.command()
@click.argument("execution")
@click.pass_obj
def unpin(state: State, execution: str) -> None:
    """Let gc treat EXECUTION like any other again."""
    from theoryx.store import pins

    click.echo(f"Unpinned {pins.unpin(state.stores(create=False).db, execution)}")


@click.command(name="pins")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_obj
def pins_cmd(state: State, as_json: bool) -> None:
    """List pinned executions."""
    import time

    from theoryx.store import pins

    rows = pins.pins(state.stores(create=False).db)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in rows]))
        return
    if not rows:
        click.echo("No pinned executions.")
    for p in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.pinned_ms / 1000))
        click.echo(f"{p.execution_id}  pinned {when} UTC" + (f"  {p.note}" if p.note else ""))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def du(state: State, as_json: bool) -> None:
    """Disk usage of the store: blobs, temp files, quarantine, leftovers of killed runs, the database."""
    from theoryx.store.stats import usage

    u = usage(state.stores(create=False))
    if as_json:
        click.echo(json.dumps(u.to_dict()))
        return
    click.echo(f"blobs      {_blobs(u.blobs)}")
    click.echo(f"temp files {_n(u.temp_files.count)} ({human_bytes(u.temp_files.bytes)})")
    if u.withdrawn.count:
        click.echo(f"withdrawn  {_blobs(u.withdrawn)} (an interrupted gc; the next gc finishes it)")
    if u.quarantined.count:
        click.echo(f"quarantine {_blobs(u.quarantined)} (found corrupt; `theoryx verify --repair` removes them)")
    if u.abandoned_workspaces.count or u.lease_temp_files.count:
        click.echo(f"left by killed runs {_n(u.abandoned_workspaces.count)} workspaces "
                   f"({human_bytes(u.abandoned_workspaces.bytes)}), {_n(u.lease_temp_files.count)} lease temp "
                   f"files (`theoryx gc` removes them)")
    click.echo(f"database   {human_bytes(u.database_bytes)}")
    click.echo(f"total      {human_bytes(u.total_bytes)}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def stats(state: State, as_json: bool) -> None:
    """Store size, cache entries, executions, hit rate and the money hits saved."""
    from theoryx.store.stats import stats as compute

    s = compute(state.stores(create=False))
    if as_json:
        click.echo(json.dumps(s.to_dict()))
        return
    rate = "-" if s.hit_rate is None else f"{s.hit_rate:.1%}"
    click.echo(f"store          {_blobs(s.usage.blobs)}, {human_bytes(s.usage.total_bytes)} in all")
    click.echo(f"cache entries  {_n(s.cache_entries)}")
    bypassed = f"{_n(s.bypassed)} bypassed the cache, " if s.bypassed else ""
    click.echo(f"executions     {_n(s.executions)}: {_n(s.hits)} hits, {_n(s.misses)} misses, {bypassed}"
               f"{_n(s.failures)} failed")
    click.echo(f"hit rate       {rate}")
    click.echo(f"spent          {dollars(s.spent_micros)}")
    click.echo(f"saved by hits  {dollars(s.saved_micros)}")
    click.echo(f"pinned         {_n(s.pins)}")


COMMANDS: list[click.Command] = [gc, verify, pin, unpin, pins_cmd, du, stats]
