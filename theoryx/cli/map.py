"""``theoryx map``: one processor over every item of a JSON Lines file, through ``Session.map``.

Output: one JSON line per item — its line number, its id, then exactly what ``run --json``
prints for it — in input order (``--unordered``: as items finish), on stdout or atomically into
``--out``. Progress on stderr (a rich bar on a terminal, a plain line every few seconds
otherwise) and a summary at the end. Exit 0 when every item succeeded, 1 when any failed, 2 on
usage errors, 130 when interrupted (Ctrl-C once: nothing more is admitted, items in flight
finish and are recorded, the summary is printed; twice: stop at once).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click

from theoryx.cli.options import MAP_OPTIONS
from theoryx.cli.run import with_options
from theoryx.cli.runcore import parse_json
from theoryx.cli.state import State
from theoryx.errors import InputsError, TheoryxError, UsageError
from theoryx.pipeline.batch import Batch, Item, ItemResult

ITEM_KEYS = frozenset({"inputs", "attach", "id"})
PLAIN_EVERY_S = 5.0


def read_items(stream: IO[str], base: Path) -> Iterator[Item]:
    """Items of a JSON Lines stream, lazily; ``attach`` paths relative to ``base``. A line that
    is not a valid item becomes an item that fails with ``ERR_INPUTS`` naming its line; blank
    lines are skipped (they still count for line numbers)."""
    for n, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = parse_json(line, "the item")
            if not isinstance(value, dict):
                raise InputsError("an item is a JSON object {\"inputs\": ..., \"attach\": ..., \"id\": ...}")
            unknown = sorted(set(value) - ITEM_KEYS)
            if unknown:
                raise InputsError(f"unknown key(s) {', '.join(map(repr, unknown))} (an item has inputs, attach, id)")
            attach = value.get("attach") or {}
            if not isinstance(attach, dict) or not all(isinstance(v, str) for v in attach.values()):
                raise InputsError('"attach" maps attachment names to file paths (strings)')
            label = value.get("id")
            yield Item(line=n, inputs=value.get("inputs", {}), id=None if label is None else str(label),
                       attachments={k: (base / Path(v).expanduser()) for k, v in attach.items()})
        except TheoryxError as exc:
            yield Item(line=n, error=InputsError(f"line {n}: {exc.message}"))


class Tally:
    """Counts for the progress line and the summary (money in micro-USD)."""

    def __init__(self) -> None:
        self.done = self.hits = self.misses = self.failed = self.spent = self.saved = 0
        self.t0 = time.monotonic()

    def add(self, r: ItemResult) -> None:
        self.done += 1
        if r.result is None:
            self.failed += 1
        elif r.result.cache == "miss":
            self.misses += 1
            self.spent += r.result.record.cost_micros
        else:
            self.hits += 1
            self.saved += r.result.record.saved_micros

    def line(self) -> str:
        from theoryx.budget.money import dollars

        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        return (f"{self.done} items: {self.hits} hits, {self.misses} misses, {self.failed} failed; "
                f"spent {dollars(self.spent)}, saved {dollars(self.saved)}; {rate:.1f} items/s, "
                f"{elapsed:.1f} s")


class Progress:
    """A rich bar on a terminal, else a plain line on stderr every few seconds; or nothing."""

    def __init__(self, tally: Tally, quiet: bool, total: int | None = None) -> None:
        self.tally, self.quiet, self.total = tally, quiet, total
        self.bar: Any = None
        self.task: Any = None
        self.last = time.monotonic()
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[status]}"),
                                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("map", total=total, status="")

    def update(self) -> None:
        if self.quiet:
            return
        t = self.tally
        if self.bar is not None:
            elapsed = max(time.monotonic() - t.t0, 1e-9)
            from theoryx.budget.money import dollars

            self.bar.update(self.task, completed=t.done,
                            status=f"hits {t.hits} misses {t.misses} failed {t.failed} spent {dollars(t.spent)} "
                                   f"{t.done / elapsed:.1f}/s")
        elif time.monotonic() - self.last >= PLAIN_EVERY_S:
            self.last = time.monotonic()
            of = f" of {self.total}" if self.total is not None else ""
            sys.stderr.write(f"theoryx map: {t.line()}{of}{self._eta()}\n")
            sys.stderr.flush()

    def _eta(self) -> str:
        t = self.tally
        elapsed = time.monotonic() - t.t0
        if self.total is None or not t.done or elapsed <= 0:
            return ""
        return f", ETA {max(self.total - t.done, 0) / (t.done / elapsed):.0f} s"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@click.command("map")
@with_options(MAP_OPTIONS)
@click.pass_obj
def map_(state: State, /, **v: Any) -> None:
    """Run a processor over every item of a JSON Lines file; each item is its own cached run.

    One output line per item (its line number, id and the `run --json` envelope), in input order
    unless --unordered. Exit 0 when every item succeeded, 1 when any failed. Ctrl-C: nothing more
    is admitted, running containers (local) and Sandboxes (modal) are stopped and their items end
    with ERR_CANCELLED, what finished is kept, and the summary is printed (exit 130); a second
    Ctrl-C stops at once.
    """
    from theoryx.cli import notices
    from theoryx.pipeline.session import Session

    home = v["home"] or state.home
    registry = v["registry"] or state.registry
    if v["build"] and v["adapter"] == "mock":
        raise UsageError("--build rebuilds a container image: it applies to --adapter local or modal, not mock")
    if v["jobs"] is not None and v["jobs"] < 1:
        raise UsageError("--jobs must be at least 1")
    opts = parse_json(v["adapter_opts_json"], "--adapter-opts-json") if v["adapter_opts_json"] else {}
    if not isinstance(opts, dict):
        raise UsageError("--adapter-opts-json must be a JSON object")
    from theoryx.pipeline import writeprefix

    writeprefix.check(v["write_prefix"])
    if v["items"] == "-":
        stream: IO[str] = sys.stdin
        base = Path.cwd()
    else:
        try:
            stream = open(v["items"], encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read --items {v['items']}: {exc.strerror}") from None
        base = Path(v["items"]).resolve().parent
    out_path = Path(v["out"]) if v["out"] else None
    out, tmp = _open_out(out_path)
    tally = Tally()
    progress = Progress(tally, v["quiet"], None if stream is sys.stdin else _count_items(Path(v["items"])))
    holder: list[Batch] = []
    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted or not holder:
            raise KeyboardInterrupt
        interrupted = True
        holder[0].cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with notices.shown(), Session(home, registry=registry) as session:
            results = session.map(
                v["ref"], read_items(stream, base), jobs=v["jobs"], ordered=not v["unordered"],
                fail_fast=v["fail_fast"], batch=holder, adapter=v["adapter"], plan=v["plan"],
                write_prefix=v["write_prefix"], seed=v["seed"], salt=v["salt"], no_cache=v["no_cache"],
                adapter_options=opts, build=v["build"])
            for r in results:
                tally.add(r)
                out.write(json.dumps(_cli_json(r)) + "\n")
                if out_path is None:
                    out.flush()
                progress.update()
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
        if stream is not sys.stdin:
            stream.close()
        _close_out(out, tmp, out_path)
    if not v["quiet"]:
        sys.stderr.write(f"theoryx map: {'interrupted: ' if interrupted else ''}{tally.line()}\n")
    code = 130 if interrupted else (1 if tally.failed else 0)
    if code:
        click.get_current_context().exit(code)


def _count_items(path: Path) -> int | None:
    """Non-blank lines of a regular file (for the bar's total and the ETA); None for a pipe."""
    if not path.is_file():
        return None
    count = 0
    with open(path, "rb") as f:
        for line in f:
            count += bool(line.strip())
    return count


def _cli_json(r: ItemResult) -> dict[str, Any]:
    """The item's line with the CLI's wording of its error (as ``run --json`` prints it)."""
    from theoryx.cli import messages

    body = r.to_json()
    if r.error is not None:
        body["error"] = messages.to_dict(r.error)
    return body


def _open_out(path: Path | None) -> tuple[IO[str], Path | None]:
    if path is None:
        return sys.stdout, None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    return open(tmp, "w", encoding="utf-8"), tmp


def _close_out(out: IO[str], tmp: Path | None, path: Path | None) -> None:
    """Flush; ``--out`` is renamed into place (with what finished), so it is never half-written."""
    out.flush()
    if tmp is None or path is None:
        return
    out.close()
    os.replace(tmp, path)


COMMANDS = [map_]
