"""``theoryx remote push|status``: share earlier results with the team cache, and check it.

The remote comes from ``--remote URL``, else ``THEORYX_REMOTE``, else ``<home>/remote.json``
(BUILD.md, "Team cache"). Credentials are only ever named, never shown.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from theoryx.cli import messages
from theoryx.cli.options import not_empty
from theoryx.cli.state import State
from theoryx.errors import RemoteConfigError, RemoteError, UsageError


@click.group(name="remote")
def remote() -> None:
    """The team cache: signed results shared through a remote store."""


def _config(state: State, url: str | None) -> Any:
    from theoryx.remote.config import load

    root = state.home_root()      # remote.json is read from it; nothing is created
    config = load(root, url)
    if config is None:
        raise RemoteConfigError("no team cache configured: use --remote URL, THEORYX_REMOTE, or url in "
                                f"{root / 'remote.json'}")
    return config


@remote.command()
@click.argument("executions", nargs=-1, metavar="[EXEC]...")
@click.option("--all", "push_all", is_flag=True, help="Every cache entry produced in this home.")
@click.option("--remote", "url", metavar="URL", callback=not_empty,
              help="Team cache URL (default THEORYX_REMOTE, else remote.json).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def push(state: State, executions: tuple[str, ...], push_all: bool, url: str | None, as_json: bool) -> None:
    """Upload the results of executions EXEC (or --all): missing blobs first, then each signed entry."""
    from theoryx.remote import cache

    if bool(executions) == push_all:
        raise UsageError("name executions to push, or --all (not both)")
    config = _config(state, url)
    stores = state.stores(create=False)     # a home that does not exist has nothing to push
    todo = cache.publishable(stores, None if push_all else executions)
    pushed = []
    for entry, receipt_cid in todo:
        done = cache.publish(stores, entry, config, receipt_cid=receipt_cid, strict=True)
        assert done is not None  # strict: None is never returned
        pushed.append({"memo_key": done.memo_key, "execution_id": entry.execution_id, "uploaded": done.uploaded,
                       "uploaded_bytes": done.uploaded_bytes, "present": done.present, "entry": done.entry_path})
        if not as_json:
            click.echo(f"pushed {done.memo_key} (execution {entry.execution_id}): {done.uploaded} blob(s) uploaded "
                       f"({done.uploaded_bytes} bytes), {done.present} already there")
    if as_json:
        click.echo(json.dumps({"status": "success", "remote": config.url, "pushed": pushed}, sort_keys=True))
    elif not pushed:
        click.echo("nothing to push")


@remote.command()
@click.option("--remote", "url", metavar="URL", callback=not_empty,
              help="Team cache URL (default THEORYX_REMOTE, else remote.json).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def status(state: State, url: str | None, as_json: bool) -> None:
    """Reachability, credentials (present or not), trusted keys and whether this client uploads.
    Exit 1 if the remote cannot be reached or its configuration is unusable (a basic-auth user
    without its password, or the reverse, counts: the client then sends no credentials)."""
    from theoryx.provenance import keys
    from theoryx.remote import cache, layout, trust
    from theoryx.remote.config import credential_problem, credentials_sent

    config = _config(state, url)
    info: dict[str, Any] = {"remote": config.url, "source": config.source, "scheme": config.scheme,
                            "credentials": config.credential_names(),
                            "credentials_sent": credentials_sent(config.scheme),
                            "timeouts": vars(config.timeouts), "concurrency": config.concurrency}
    trusted = [{"path": str(p), "keyid": keys.keyid(k)}
               for p, k in zip(config.trusted_keys, trust.configured_keys(config), strict=True)]
    info["trusted_keys"] = trusted
    error: RemoteError | None = None
    half = credential_problem(config.scheme)
    if half is not None:
        error = RemoteConfigError(half)
    try:
        key = cache.signing_key(config) if config.signing_key or config.upload else None
        info["signing_key"] = keys.keyid(key.public_key()) if key else None
    except RemoteError as exc:
        info["signing_key"] = None
        if config.upload:
            error = error or exc
    info["upload"] = bool(config.upload and info["signing_key"])
    t0 = time.monotonic()
    try:
        cache.store_for(config).size(layout.entry_path("b3:" + "0" * 64))
        info["reachable"] = True
    except RemoteError as exc:
        info["reachable"] = False
        error = error or exc
    info["probe_ms"] = round((time.monotonic() - t0) * 1000, 1)
    problem = error.message if error is not None else None
    info["problem"] = problem
    info["status"] = "error" if error is not None else "success"
    if error is not None:
        info["error"] = messages.to_dict(error)
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
    else:
        creds = ", ".join(info["credentials"]) or "none set"
        ignored = [n for n in info["credentials"] if n not in info["credentials_sent"]]
        if ignored and info["credentials_sent"]:
            creds += f" (sent: {', '.join(info['credentials_sent'])}; ignored: {', '.join(ignored)})"
        click.echo(f"remote: {config.url} (from {config.source})")
        click.echo(f"reachable: {'yes' if info['reachable'] else 'no'} ({info['probe_ms']} ms)")
        click.echo(f"credentials: {creds}")
        click.echo(f"trusted keys: {len(trusted)}" + "".join(f"\n  {t['keyid'][:16]}  {t['path']}" for t in trusted))
        click.echo(f"signing key: {info['signing_key'][:16] if info['signing_key'] else 'none'}")
        click.echo(f"upload: {'yes' if info['upload'] else 'no'}")
        if problem:
            click.echo(f"problem: {problem}")
    if problem:
        raise click.exceptions.Exit(1)


COMMANDS = [remote]
