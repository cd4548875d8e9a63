"""Reading the store: ``cat``, ``show``, ``ls``, ``export``, ``logs``.

Every byte that leaves the store here is hashed first: a blob whose bytes do not match its cid is
quarantined by the CAS and the command fails with ``ERR_CORRUPT_BLOB`` before printing or
exporting any of it (``cat`` hashes a large blob once before streaming it and once more while
streaming; ``export`` writes into a private directory that is removed on failure).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from theoryx.cli.options import not_empty
from theoryx.cli.output import dollars
from theoryx.cli.state import State
from theoryx.errors import NotFound, UsageError

SMALL_CAT = 16 << 20
"""``cat`` reads (and hashes) blobs up to this size in one go; larger ones are hashed, then streamed."""


@click.command()
@click.argument("target")
@click.pass_obj
def cat(state: State, target: str) -> None:
    """Print a blob by world path (/artifacts/...) or cid (b3:...)."""
    from cas import CasError
    from theoryx.store.handle import store_error
    from theoryx.store.worldpaths import resolve

    stores = state.stores(create=False)
    cid = resolve(stores, target)
    try:
        blob = stores.cas.stat(cid)
        if blob is not None and blob.size <= SMALL_CAT:
            sys.stdout.buffer.write(stores.cas.read(cid))
        else:
            stores.cas.check(cid)  # not one corrupt byte reaches stdout
            with stores.cas.open_verified(cid) as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
    except CasError as exc:
        raise store_error(exc, None if target == cid else f"{target} ({cid})") from None
    sys.stdout.buffer.flush()


@click.command(name="show")
@click.argument("execution")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.pass_obj
def show(state: State, execution: str, as_json: bool) -> None:
    """Show one execution: status, cache, key, outputs, logs, cost, audits."""
    from theoryx.provenance import audit_records as audits
    from theoryx.store import executions, receipts

    stores = state.stores(create=False)
    rec = executions.get(stores.db, execution)
    audited = audits.for_execution(stores.db, rec.execution_id)
    if as_json:
        body = rec.to_dict()
        body["files"] = receipts.execution_files(rec, stores.cas)
        body["audits"] = [a.to_dict() for a in audited]
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    rows = [
        ("execution", rec.execution_id), ("ref", rec.ref), ("adapter", rec.adapter),
        ("status", rec.status), ("cache", rec.cache or "-"), ("plan", rec.plan or "-"),
        ("memo key", rec.memo_key or "-"), ("seed", str(rec.seed)),
        ("write prefix", rec.write_prefix or "-"), ("env", rec.env_fingerprint or "-"),
        ("duration", f"{rec.duration_ms} ms"), ("cost", dollars(rec.cost_micros)),
        ("saved", dollars(rec.saved_micros)),
    ]
    if rec.source_execution:
        rows.append(("result of", rec.source_execution))
    if rec.remote_url:
        rows.append(("fetched from", f"{rec.remote_url} (team cache, signature verified)"))
    if rec.error:
        rows.append(("error", f"{rec.error['code']}: {rec.error['message']}"))
    for k, v in rows:
        click.echo(f"{k:>13}: {v}")
    for path, cid in receipts.execution_files(rec, stores.cas).items():
        click.echo(f"{'file':>13}: {path} {cid}")
    for o in rec.outputs:
        click.echo(f"{'output':>13}: {o.path} {o.cid} {o.size} bytes {o.mime}")
    for a in audited:
        click.echo(f"{'audit':>13}: {a.audit_id} {a.summary()}")


@click.command()
@click.option("--ref", callback=not_empty, help="Only executions of this ref.")
@click.option("--plan", callback=not_empty, help="Only executions charged to this plan.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records.")
@click.pass_obj
def ls(state: State, ref: str | None, plan: str | None, limit: int, as_json: bool) -> None:
    """List executions, newest first."""
    from theoryx.store import executions

    if plan is not None:
        from theoryx.budget.plans import check_key

        check_key(plan)
    if ref is not None:
        from theoryx.spec.refs import Ref

        ref = str(Ref.parse(ref))
    rows = []
    for rec in executions.latest(state.stores(create=False).db):
        if (ref and rec.ref != ref) or (plan and rec.plan != plan):
            continue
        rows.append(rec)
        if len(rows) >= limit:
            break
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows]))
        return
    if not rows:
        click.echo("No executions.")
        return
    for r in rows:
        status = r.status if r.status != "error" else f"error {r.error['code'] if r.error else ''}"
        cache = "remote" if r.cache == "hit" and r.remote_url else (r.cache or "-")   # as run --json says
        click.echo(f"{r.execution_id}  {r.ref:<22} {r.adapter:<6} {cache:<6} "
                   f"{status:<28} {r.duration_ms:>7} ms  {dollars(r.cost_micros)}")


@click.command()
@click.argument("execution")
@click.argument("directory", callback=not_empty, type=click.Path(file_okay=False))
@click.pass_obj
def export(state: State, execution: str, directory: str) -> None:
    """Write an execution's outputs (by path below the write prefix), receipt, index, action and
    logs into DIRECTORY, which must not exist or be empty. Written privately, then renamed; a
    failed export leaves nothing behind, not even the parent directories it created."""
    from theoryx.store import executions, receipts

    stores = state.stores(create=False)
    rec = executions.get(stores.db, execution)
    if rec.status != "success":
        raise UsageError(f"execution {rec.execution_id} did not succeed; nothing to export")
    dest = Path(directory)
    into_existing = False
    made: list[Path] = []
    from theoryx.cli.output import check_target

    check_target(dest, what="export to", directory=True, verb="export to")
    try:
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise UsageError(f"{dest} exists and is not an empty directory")
        into_existing = dest.is_dir()
        parent = Path(os.path.abspath(dest)).parent
        made = _missing_dirs(parent)       # removed again if the export fails
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{Path(os.path.abspath(dest)).name}.", dir=parent))
    except OSError as exc:
        _remove_dirs(made)
        raise UsageError(f"cannot export to {dest}: {exc.strerror or exc}") from None
    moved: list[Path] = []
    try:
        prefix = rec.write_prefix or ""
        for o in rec.outputs:
            rel = o.path[len(prefix):] if o.path.startswith(prefix) else o.path.lstrip("/")
            _copy_blob(stores, o.cid, tmp / "outputs" / rel)
        for path, cid in receipts.execution_files(rec, stores.cas).items():
            _copy_blob(stores, cid, tmp / path.rsplit("/", 1)[1])
        if into_existing:    # an empty directory keeps its mode and owner: the files move into it
            for entry in sorted(tmp.iterdir()):
                os.rename(entry, dest / entry.name)
                moved.append(dest / entry.name)
            tmp.rmdir()
        else:
            os.replace(tmp, dest)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(dest, 0o777 & ~umask)      # private while written, then as any new directory
    except BaseException as exc:
        for done in moved:
            if done.is_dir():
                shutil.rmtree(done, ignore_errors=True)
            else:
                done.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_dirs(made)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot export to {dest}: {exc.strerror or exc}") from None
        raise
    click.echo(f"Exported {len(rec.outputs)} output(s) of {rec.execution_id} to {dest}")


def _missing_dirs(path: Path) -> list[Path]:
    """The directories ``path.mkdir(parents=True)`` would create, deepest first."""
    missing: list[Path] = []
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def _remove_dirs(dirs: list[Path]) -> None:
    """Remove the directories a failed ``export`` created (deepest first), if still empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


def _copy_blob(stores: object, cid: str, dest: Path) -> None:
    """Copy blob ``cid`` to ``dest`` while hashing it (``dest`` is in the private directory that
    ``export`` removes on any failure, so a corrupt blob leaves nothing behind)."""
    from cas import BlobNotFound, CasError
    from theoryx.store.handle import Stores, store_error

    assert isinstance(stores, Stores)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with stores.cas.open_verified(cid) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except BlobNotFound:
        raise NotFound(f"blob {cid} is no longer in the store (see `theoryx verify`)") from None
    except CasError as exc:
        raise store_error(exc, f"{dest.name} ({cid})") from None


@click.command()
@click.argument("execution")
@click.option("--stderr", "only_stderr", is_flag=True, help="Only stderr.")
@click.option("--stdout", "only_stdout", is_flag=True, help="Only stdout.")
@click.pass_obj
def logs(state: State, execution: str, only_stderr: bool, only_stdout: bool) -> None:
    """Print an execution's captured stdout and stderr (secrets scrubbed); both flags, or
    neither, print both."""
    from cas import CasError
    from theoryx.store import executions
    from theoryx.store.handle import store_error

    stores = state.stores(create=False)
    rec = executions.get(stores.db, execution)
    wanted = {n for n, flag in (("stdout", only_stdout), ("stderr", only_stderr)) if flag} or {"stdout", "stderr"}
    for name, cid in (("stdout", rec.stdout_cid), ("stderr", rec.stderr_cid)):
        if name not in wanted:
            continue
        if cid is None:
            continue
        try:
            data = stores.cas.read(cid)  # hashed: a corrupt log is quarantined, never printed
        except CasError as exc:
            raise store_error(exc, f"{name} of {rec.execution_id} ({cid})") from None
        (sys.stderr.buffer if name == "stderr" else sys.stdout.buffer).write(data)
    sys.stdout.flush()

