"""Reproducibility commands: ``audit``, ``explain``, ``receipt``, ``keygen``, ``verify-receipt``.

Exit codes: ``audit`` 0 reproducible (or stochastic), 1 diverged, 2 could not audit (also for an
unknown execution); ``verify-receipt`` 0 verified, 1 failed; the others the group's usual ones.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from theoryx.cli.main import stdin_bytes
from theoryx.cli.options import not_empty
from theoryx.cli.output import atomic_write
from theoryx.cli.state import State
from theoryx.errors import NoHome, TheoryxError, UsageError

AUDIT_EXIT = {"reproducible": 0, "stochastic": 0, "diverged": 1, "unauditable": 2}


def _echo_audit(rec: Any) -> None:
    """The human report of one :class:`~theoryx.provenance.audit_records.AuditRecord`."""
    click.echo(f"Audit {rec.audit_id} of execution {rec.execution_id} ({rec.ref}, recorded on "
               f"{rec.recorded_adapter}) on {rec.adapter}")
    if rec.replay_execution and rec.verdict == "unauditable":    # the replay stopped before it executed
        click.echo(f"  the replay {rec.replay_execution} was refused before it executed")
    elif rec.replay_execution:
        click.echo(f"  re-executed as {rec.replay_execution}")
    if rec.audited_memo_key and rec.audited_memo_key != rec.memo_key:
        click.echo(f"  memo key differs: recorded {rec.memo_key}, audited {rec.audited_memo_key} "
                   f"(audited against the current spec)")
    if rec.changes:
        click.echo("  changed since the execution:")
        for c in rec.changes:
            click.echo(f"    {c['text']}")
    if rec.verdict == "reproducible":
        click.echo(f"reproducible: all {rec.outputs_compared} output(s) have the recorded cids")
    elif rec.verdict == "stochastic":
        same = "outputs matched this time" if not rec.differences else "outputs differ, as may be expected"
        click.echo(f"stochastic: {rec.ref} is declared stochastic ({same}); not a failure")
    elif rec.verdict == "diverged":
        click.echo(f"diverged: {rec.reason}" if rec.reason else
                   f"diverged: {len(rec.differences)} of {rec.outputs_compared} output path(s) differ")
    else:
        click.echo(f"could not audit: {rec.reason}")
    for d in rec.differences:
        click.echo(f"  {d.status:<8} {d.path}")
        for side in ("recorded", "replayed"):
            e = getattr(d, side)
            click.echo(f"    {side}: " + (f"{e['cid']} ({e['size_bytes']} bytes)" if e else "(absent)"))
        if d.diff:
            for line in d.diff.splitlines():
                click.echo(f"    {line}")


@click.command()
@click.argument("execution", required=False)
@click.option("--adapter", type=click.Choice(["local", "mock", "modal"]),
              help="Re-execute here (default: the recorded adapter).")
@click.option("--current", is_flag=True, help="If the processor changed, audit against the current spec.")
@click.option("--sample", "sample_n", type=click.IntRange(min=1), metavar="N",
              help="Audit N random action cache entries instead of one execution.")
@click.option("--ref", callback=not_empty, help="With --sample: only entries of this ref.")
@click.option("--plan", metavar="KEY", callback=not_empty, help="Budget plan charged for the re-executions.")
@click.option("--build", is_flag=True, help="Rebuild the image before re-executing (local adapter).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def audit(state: State, execution: str | None, adapter: str | None, current: bool, sample_n: int | None,
          ref: str | None, plan: str | None, build: bool, as_json: bool) -> None:
    """Re-execute EXECUTION bypassing the cache and compare its outputs with the recorded ones.
    Exit 0 reproducible, 1 diverged, 2 could not audit."""
    from theoryx.provenance import audit as auditing

    if (execution is None) == (sample_n is None):
        raise UsageError("give an EXECUTION or --sample N (not both)")
    if ref and sample_n is None:
        raise UsageError("--ref only applies with --sample")
    opts = auditing.Options(adapter=adapter, current=current, registry=state.registry, plan=plan, build=build)
    try:
        _check_setup(state, plan, ref)
        if sample_n is not None:
            _sample(state, sample_n, ref, opts, as_json)
            return
        rec = auditing.audit(state.stores(create=False), execution or "", opts)
    except TheoryxError as exc:     # could not audit at all: the command's error, as every command's
        exc.exit_code = 2
        raise
    if as_json:
        click.echo(json.dumps(rec.to_dict(), sort_keys=True))
    else:
        _echo_audit(rec)
    sys.exit(AUDIT_EXIT[rec.verdict])


def _check_setup(state: State, plan: str | None, ref: str | None) -> None:
    """What every re-execution of the audit shares, checked before any: a mistake there (a
    malformed plan key or ``--ref``, a registry that is no directory) is the command's
    error, not an ``unauditable`` verdict recorded on each execution audited."""
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    if plan is not None:     # a missing plan is created on first use, as for `run`
        from theoryx.budget.plans import check_key

        check_key(plan)
    if ref is not None:
        Ref.parse(ref)
    Registry.from_option(state.registry)


def _sample(state: State, n: int, ref: str | None, opts: Any, as_json: bool) -> None:
    from theoryx.provenance import audit as auditing

    recs = auditing.sample(state.stores(create=False), n, ref=ref, opts=opts)
    counts = Counter(r.verdict for r in recs)
    code = 1 if counts["diverged"] else 2 if counts["unauditable"] else 0
    if as_json:
        click.echo(json.dumps({"audited": len(recs), "counts": dict(counts),
                               "audits": [r.to_dict() for r in recs]}, sort_keys=True))
        sys.exit(code)
    if not recs:
        click.echo("No cached entries to audit" + (f" for {ref}" if ref else "") + ".")
    for r in recs:
        click.echo(f"{r.execution_id}  {r.ref:<22} {r.summary()}")
    summary = ", ".join(f"{counts[v]} {v}" for v in ("reproducible", "diverged", "stochastic", "unauditable")
                        if counts[v])
    click.echo(f"Audited {len(recs)} cached entr{'y' if len(recs) == 1 else 'ies'}" + (f": {summary}" if recs else ""))
    sys.exit(code)


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def explain(state: State, a: str, b: str, as_json: bool) -> None:
    """Why two executions (ids) or memo keys (b3:...) differ: a field-by-field diff of their
    stored action pre-images."""
    from theoryx.provenance.explain import explain as run_explain

    result = run_explain(state.stores(create=False), a, b)
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
        return
    for line in result.lines():
        click.echo(line)


def _expand(text: str, flag: str) -> Path:
    """The key file ``flag`` names, with ``~`` expanded; :class:`UsageError` naming it when that
    cannot be (no such user; no home directory), not pathlib's ``RuntimeError``."""
    try:
        return Path(text).expanduser()
    except RuntimeError:        # "Could not determine home directory."
        raise UsageError(f"{flag} {text[:200]!r} cannot be expanded (no such user, or no home directory "
                         "to expand ~ to): give the path in full") from None


@click.command()
@click.argument("execution")
@click.option("--format", "fmt", type=click.Choice(["theoryx", "in-toto"]), default="theoryx", show_default=True,
              help="theoryx: determinism.json; in-toto: an in-toto Statement v1 with SLSA provenance v1.")
@click.option("--sign", "sign_key", callback=not_empty, type=click.Path(dir_okay=False), metavar="KEYFILE",
              help="Wrap the receipt in a DSSE envelope signed with this ed25519 key (see `theoryx keygen`).")
@click.option("--out", callback=not_empty, type=click.Path(dir_okay=False, allow_dash=True),
              help="Write to FILE instead of stdout ('-': stdout).")
@click.pass_obj
def receipt(state: State, execution: str, fmt: str, sign_key: str | None, out: str | None) -> None:
    """Print an execution's receipt, portable and optionally signed."""
    from theoryx.provenance.attestation import export

    data = export(state.stores(create=False), execution, fmt, _expand(sign_key, "--sign") if sign_key else None)
    if out and out != "-":
        atomic_write(Path(out), data)
        click.echo(f"Wrote {out}", err=True)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@click.command()
@click.option("--out", callback=not_empty, type=click.Path(dir_okay=False), help="Private key file (default: "
              "$XDG_CONFIG_HOME/theoryx/signing.key); the public key goes to FILE.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key.")
def keygen(out: str | None, force: bool) -> None:
    """Create an ed25519 key pair for signing receipts."""
    from theoryx.provenance import keys

    path = _expand(out, "--out") if out else keys.default_path()
    kid = keys.generate(path, force=force)
    click.echo(f"Private key: {path} (mode 0600; keep it secret)")
    click.echo(f"Public key:  {keys.public_path(path)}")
    click.echo(f"Key id:      {kid}")


@click.command(name="verify-receipt")
@click.argument("file", callback=not_empty, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--key", callback=not_empty, type=click.Path(dir_okay=False), metavar="PUB",
              help="Public key to check the signature with (default: the default key's .pub).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def verify_receipt(state: State, file: str, key: str | None, as_json: bool) -> None:
    """Check a receipt: its signature, that every cid is in the store and rehashes right, and that
    the memo key recomputes from the stored action pre-image. Exit 0 verified, 1 failed."""
    from theoryx.provenance.attestation import verify

    try:
        data = stdin_bytes(file) if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    public = _expand(key, "--key") if key else None
    try:
        result = verify(state.stores(create=False), data, public)
    except NoHome as missing:
        # No home here (never used, or a misspelt --home): nothing is created there; the receipt
        # is checked against an empty store (signature, format, action and memo key as far as
        # the receipt itself allows; blob and record checks fail or are skipped), and said so.
        import tempfile

        from theoryx.store.handle import open_stores

        with tempfile.TemporaryDirectory(prefix="theoryx-verify-") as tmp:
            result = verify(open_stores(Path(tmp) / "home"), data, public)
        result.add("store", "skipped", f"{missing.message}: checked against an empty store")
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        for line in result.lines():
            click.echo(line)
    sys.exit(0 if result.ok else 1)


COMMANDS: list[click.Command] = [audit, explain, receipt, keygen, verify_receipt]
