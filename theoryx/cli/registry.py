"""``theoryx registry ls|show|validate``."""

from __future__ import annotations

import json

import click

from theoryx.cli.state import State


@click.group()
def registry() -> None:
    """Inspect and validate processor specs."""


@registry.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def ls_cmd(state: State, as_json: bool) -> None:
    """List the processors in the registry search path."""
    from theoryx.spec.registry import Registry, parse

    reg = Registry.from_option(state.registry)
    rows = []
    for ref, path in reg.refs():
        try:
            desc = parse(path.read_bytes(), path).description
        except Exception as exc:  # listed anyway, marked broken
            desc = f"(invalid: {exc})"
        rows.append({"ref": str(ref), "path": str(path), "description": desc})
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No processors found in: " + ", ".join(str(r) for r in reg.roots))
    for r in rows:
        first = r["description"].split(". ")[0]
        if len(first) > 80:     # at a word, marked
            first = first[:79].rsplit(" ", 1)[0].rstrip(",;:") + "…"
        click.echo(f"{r['ref']:<24} {first}")


@registry.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def show(state: State, ref: str, as_json: bool) -> None:
    """Show one spec, validated, with its digest."""
    from theoryx.core.canonical import canonical_digest
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    reg = Registry.from_option(state.registry)
    path = reg.locate(Ref.parse(ref))
    spec = reg.load(Ref.parse(ref))
    body = spec.to_cache()
    body["spec_digest"] = canonical_digest(spec.execution_fields())
    body["path"] = str(path)
    if as_json:
        click.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    click.echo(f"# {path}")
    click.echo(f"# spec digest {body['spec_digest']}")
    click.echo(path.read_text().rstrip())


@registry.command()
@click.pass_obj
def validate(state: State) -> None:
    """Validate every spec and its processor folder; exit 1 if any is invalid (or misnamed)."""
    from theoryx.errors import TheoryxError
    from theoryx.spec.context import check
    from theoryx.spec.registry import Registry, load_file

    reg = Registry.from_option(state.registry)
    bad = 0
    count = 0
    for ref, path in reg.refs():
        count += 1
        try:
            check(load_file(path, None, expect=ref))
            click.echo(f"ok       {ref}")
        except TheoryxError as exc:
            bad += 1
            click.echo(f"INVALID  {ref}: {exc.message}")
    for path in reg.strays():     # else silently skipped: `run` would never find them
        count += 1
        bad += 1
        click.echo(f"INVALID  {path}: not a spec any ref finds: a spec file is "
                   "processors/<ns>/<name>@<version>.yaml (lowercase letters, digits, '.', '_' or '-')")
    click.echo(f"{count - bad} valid, {bad} invalid")
    if bad:
        raise SystemExit(1)
