"""``theoryx map``: one processor over every item of a JSON Lines file, through ``Session.map``.

Output: one JSON line per item — its line number, its id, then exactly what ``run --json``
prints for it — in input order (``--unordered``: as items finish), on stdout or atomically into
``--out``. Progress on stderr (a rich bar on a terminal, a plain line every few seconds
otherwise) and a summary at the end. Exit 0 when every item succeeded, 1 when any failed, 2 on
usage errors, 130 when interrupted (Ctrl-C once: nothing more is admitted, items in flight
finish and are recorded, the summary is printed; twice: stop at once), 143 when stopped by
SIGTERM (the same, gracefully). ``--out`` receives what finished when the batch ends, fails
items or is interrupted, and is left as it was on an error that stops the batch.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click

from theoryx.cli.options import MAP_OPTIONS
from theoryx.cli.output import OutputFile
from theoryx.cli.run import with_options
from theoryx.cli.runcore import parse_json, utf8_text
from theoryx.cli.state import State
from theoryx.errors import InputsError, TheoryxError, UsageError
from theoryx.pipeline.attachments import host_path
from theoryx.pipeline.batch import Batch, Item, ItemResult

ITEM_KEYS = frozenset({"inputs", "attach", "id"})
PLAIN_EVERY_S = 5.0


def pumped(stream: IO[bytes], stop: threading.Event) -> Iterator[bytes | None]:
    """The lines of a pipe or terminal, read on a daemon thread (at most 256 ahead), so that a
    Ctrl-C (``stop`` set) ends the items even while no line arrives; a read error is raised here.
    None every 0.1 s without a line: the batch reports finished items meanwhile."""
    lines: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=256)

    def pump() -> None:
        # os.read on the descriptor, not the buffered stream: a daemon thread left blocked in a
        # read must hold none of the stream's locks when the interpreter exits.
        try:
            fd, partial = stream.fileno(), bytearray()     # a line's start, over as many reads as it takes
            while chunk := os.read(fd, 1 << 16):
                *complete, tail = chunk.split(b"\n")       # each byte is looked at once: linear in a long line
                for line in complete:
                    if partial:
                        partial += line
                        line, partial = bytes(partial), bytearray()
                    lines.put(line + b"\n")
                partial += tail
            if partial:
                lines.put(bytes(partial))
            lines.put(None)
        except BaseException as exc:  # handed to the reading thread
            lines.put(exc)

    threading.Thread(target=pump, name="theoryx-map-items", daemon=True).start()
    while not stop.is_set():
        try:
            got = lines.get(timeout=0.1)
        except queue.Empty:
            yield None
            continue
        if got is None:
            return
        if isinstance(got, BaseException):
            raise got
        yield got


def read_items(stream: Iterable[bytes | None], base: Path) -> Iterator[Item | None]:
    """Items of JSON Lines (byte lines: UTF-8, a leading byte-order mark allowed), lazily;
    ``attach`` paths relative to ``base``. A line that is not a valid item — not UTF-8, not
    JSON, not an item object — becomes an item that fails with ``ERR_INPUTS`` naming its line
    (and carrying its ``id`` when the line has a usable one); blank lines are skipped (they
    still count for line numbers). None (no line yet) passes through."""
    n = 0
    for raw in stream:
        if raw is None:         # no line yet (see :func:`pumped`)
            yield None
            continue
        n += 1
        label: str | None = None    # a line that fails after its id was read still carries it
        try:
            line = utf8_text(raw)      # a byte-order mark (the first line's) is dropped
            if not line.strip():
                continue
            value = parse_json(line, "the item")
            if not isinstance(value, dict):
                raise InputsError("an item is a JSON object {\"inputs\": ..., \"attach\": ..., \"id\": ...}")
            if isinstance(value.get("id"), (str, int, float)) and not isinstance(value.get("id"), bool):
                label = str(value["id"])
            unknown = sorted(set(value) - ITEM_KEYS)
            if unknown:
                raise InputsError(f"unknown key(s) {', '.join(map(repr, unknown))} (an item has inputs, attach, id)")
            attach = value.get("attach")
            attach = {} if attach is None else attach      # null is none; [] or "" is not a mapping
            if not isinstance(attach, dict) or not all(isinstance(v, str) for v in attach.values()):
                raise InputsError('"attach" maps attachment names to file paths (strings)')
            if value.get("id") is not None and label is None:
                raise InputsError('"id" is a label: a string or a number')
            yield Item(line=n, inputs=value.get("inputs", {}), id=label,
                       attachments={k: (base / host_path(v)) for k, v in attach.items()})
        except TheoryxError as exc:
            yield Item(line=n, id=label, error=InputsError(f"line {n}: {exc.message}"))


class Tally:
    """Counts for the progress line and the summary (money in micro-USD)."""

    def __init__(self) -> None:
        self.done = self.hits = self.remote = self.misses = self.failed = self.spent = self.saved = 0
        self.t0 = time.monotonic()

    def add(self, r: ItemResult) -> None:
        self.done += 1
        if r.result is None:
            self.failed += 1
            if r.error is not None:           # a failure after a billable call is charged too
                self.spent += r.error.cost_micros
        elif r.result.cache in ("miss", "bypass"):
            self.misses += 1
            self.spent += r.result.record.cost_micros
        else:
            self.hits += 1
            self.remote += r.result.cache == "remote"
            self.saved += r.result.record.saved_micros

    def line(self) -> str:
        from theoryx.budget.money import dollars

        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remote = f" ({self.remote} from the team cache)" if self.remote else ""
        return (f"{self.done} items: {self.hits} hits{remote}, {self.misses} misses, {self.failed} failed; "
                f"spent {dollars(self.spent)}, saved {dollars(self.saved)}; {rate:.1f} items/s, "
                f"{elapsed:.1f} s")


class CrashFiles:
    """The crash files of a batch's unexpected errors (``ERR_INTERNAL``, a bug): one file per
    kind — the exception's type and the line that raised it — however many items it failed, so
    a bug every item meets writes one file, not one per item."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str, int], str] = {}    # kind -> the message naming its file
        self.items = 0                                      # items that failed with ERR_INTERNAL

    def reported(self, error: TheoryxError) -> TheoryxError:
        """``error`` as the CLI reports it: an internal error names its crash file (written for
        the first item of its kind); any other error as it is."""
        import traceback

        from theoryx.cli.crash import internal_error
        from theoryx.errors import InternalError

        cause = error.__cause__
        if not isinstance(error, InternalError) or not isinstance(cause, Exception):
            return error
        self.items += 1
        frames = traceback.extract_tb(cause.__traceback__)
        kind = (type(cause).__name__, frames[-1].filename if frames else "", (frames[-1].lineno or 0) if frames else 0)
        if kind not in self.files:
            self.files[kind] = internal_error(cause).message
        named = InternalError(self.files[kind])
        named.execution_id = error.execution_id
        return named

    def line(self) -> str | None:
        """The summary's line about internal errors, if there were any."""
        if not self.items:
            return None
        kinds = len(self.files)
        first = next(iter(self.files.values()))
        return (f"{self.items} item(s) failed with an internal error (a bug in theoryx, {kinds} kind(s)): "
                f"{first.removeprefix('internal error ')}")


class Progress:
    """A rich bar on a terminal, else a plain line on stderr every few seconds (from a thread of
    its own, so that it is printed while items run for long and none finishes); or nothing."""

    def __init__(self, tally: Tally, quiet: bool, total: int | None = None) -> None:
        self.tally, self.quiet, self.total = tally, quiet, total
        self.bar: Any = None
        self.task: Any = None
        self.closed = threading.Event()
        self.plain: threading.Thread | None = None
        if not quiet and not sys.stderr.isatty():
            self.plain = threading.Thread(target=self._every, name="theoryx-map-progress", daemon=True)
            self.plain.start()
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[status]}"),
                                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("map", total=total, status="")

    def update(self) -> None:
        """Bring the bar up to date (a result came); the plain line has its own clock."""
        t = self.tally
        if self.bar is not None:
            elapsed = max(time.monotonic() - t.t0, 1e-9)
            from theoryx.budget.money import dollars

            self.bar.update(self.task, completed=t.done,
                            status=f"hits {t.hits} misses {t.misses} failed {t.failed} spent {dollars(t.spent)} "
                                   f"{t.done / elapsed:.1f}/s")

    def _every(self) -> None:
        """The plain line, every :data:`PLAIN_EVERY_S` seconds until :meth:`close`."""
        while not self.closed.wait(PLAIN_EVERY_S):
            of = f" of {self.total}" if self.total is not None else ""
            try:
                sys.stderr.write(f"theoryx map: {self.tally.line()}{of}{self._eta()}\n")
                sys.stderr.flush()
            except (OSError, ValueError):       # stderr gone or closed: no progress, the batch goes on
                return

    def _eta(self) -> str:
        t = self.tally
        elapsed = time.monotonic() - t.t0
        if self.total is None or not t.done or elapsed <= 0:
            return ""
        return f", ETA {max(self.total - t.done, 0) / (t.done / elapsed):.0f} s"

    def close(self) -> None:
        self.closed.set()
        if self.plain is not None:
            self.plain.join(PLAIN_EVERY_S)      # its last line is out before the summary
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
    with ERR_CANCELLED, what finished is kept, and the summary is printed (exit 130; SIGTERM the
    same, exit 143); a second Ctrl-C stops at once. --out is replaced only when the batch ends
    (or is interrupted once an item has finished); an error that stops the batch, or an
    interruption before any result, leaves it as it was.
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
        if sys.stdin is None:       # started with its standard input closed (`<&-`): cli.main.standard_streams
            raise UsageError("cannot read --items -: the standard input is closed")
        stream: IO[bytes] = sys.stdin.buffer
        base = Path.cwd()
    else:
        try:
            if os.path.isdir(v["items"]):
                raise IsADirectoryError(errno.EISDIR, "it is a directory")
            stream = open(v["items"], "rb")
        except OSError as exc:
            raise UsageError(f"cannot read --items {v['items']}: {exc.strerror}") from None
        base = Path(v["items"]).resolve().parent
    out_path = Path(v["out"]) if v["out"] else None
    try:
        if out_path is not None and v["items"] != "-" and out_path.exists() and \
                os.path.samefile(out_path, v["items"]):
            raise UsageError(f"--out {out_path} is the --items file: the results would replace the items")
        out = OutputFile(out_path) if out_path is not None else None
    except BaseException:
        if v["items"] != "-":
            stream.close()
        raise
    sink: IO[str] = sys.stdout if out is None else out.stream   # type: ignore[assignment]
    tally = Tally()
    crashes = CrashFiles()
    progress = Progress(tally, v["quiet"], None if v["items"] == "-" else _count_items(Path(v["items"])))
    holder: list[Batch] = []
    stopped_by = 0      # the first SIGINT or SIGTERM: stop admitting; a second one: stop at once
    stop_reading = threading.Event()
    lines: Iterable[bytes | None] = stream if _regular(stream) else pumped(stream, stop_reading)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped_by
        first = not stopped_by
        stopped_by = stopped_by or signum
        stop_reading.set()
        if first and holder:
            holder[0].cancel()
            return
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    keep = False        # what finished goes to --out on success, failed items and interruption, not on errors
    try:
        with notices.shown(), Session(home, registry=registry) as session:
            results = session.map(
                v["ref"], read_items(lines, base), jobs=v["jobs"], ordered=not v["unordered"],
                fail_fast=v["fail_fast"], batch=holder, adapter=v["adapter"], plan=v["plan"],
                write_prefix=v["write_prefix"], seed=v["seed"], salt=v["salt"], no_cache=v["no_cache"],
                adapter_options=opts, build=v["build"])
            def report(r: ItemResult) -> None:
                tally.add(r)
                sink.write(json.dumps(_cli_json(r, crashes)) + "\n")
                if out is None:
                    sink.flush()
                progress.update()

            try:
                for r in results:
                    report(r)
            except KeyboardInterrupt:       # stopped at once: the items in flight end and are recorded,
                results.close()             # and their lines and charges are reported all the same
                for r in holder[0].unreported if holder else ():
                    report(r)
                raise
        keep = True
    except KeyboardInterrupt:
        keep = True
        stopped_by = stopped_by or signal.SIGINT
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
        if v["items"] != "-":
            stream.close()
        if out is None:
            sys.stdout.flush()
        elif keep and not (stopped_by and not tally.done):     # interrupted before any result: as it was
            out.commit()
        else:
            out.abandon()
    if not v["quiet"]:
        sys.stderr.write(f"theoryx map: {'interrupted: ' if stopped_by else ''}{tally.line()}\n")
    if crashes.line() is not None:      # even under --quiet: a bug must not go unnoticed
        sys.stderr.write(f"theoryx map: {crashes.line()}\n")
    code = 128 + stopped_by if stopped_by else (1 if tally.failed else 0)
    if code:
        click.get_current_context().exit(code)


def _regular(stream: IO[bytes]) -> bool:
    """Whether ``stream`` is a regular file (or in memory): its reads never wait for a writer."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):      # no descriptor (io.UnsupportedOperation is both)
        return True


def _count_items(path: Path) -> int | None:
    """Non-blank lines of a regular file (for the bar's total and the ETA); None for a pipe."""
    if not path.is_file():
        return None
    count = 0
    with open(path, "rb") as f:
        for line in f:
            count += bool(line.strip())
    return count


def _cli_json(r: ItemResult, crashes: CrashFiles) -> dict[str, Any]:
    """The item's line with the CLI's wording of its error (as ``run --json`` prints it; an
    internal error names its crash file)."""
    from theoryx.cli import messages

    body = r.to_json()
    if r.error is not None:
        body["error"] = messages.to_dict(crashes.reported(r.error))
    return body


COMMANDS = [map_]
