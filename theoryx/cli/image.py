"""``theoryx image build|ls``: the local adapter's processor images."""

from __future__ import annotations

import json

import click

from theoryx.cli.state import State


@click.group()
def image() -> None:
    """Build and list processor images on the local Docker engine."""


@image.command()
@click.argument("ref")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists (and bypass the layer cache).")
@click.option("--quiet", "-q", is_flag=True, help="Do not show the build log.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def build(state: State, ref: str, force: bool, quiet: bool, as_json: bool) -> None:
    """Build REF's image offline (tagged by its build context) unless it already exists."""
    from theoryx.adapters.local import docker_client, images
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry.from_option(state.registry).load(Ref.parse(ref), state.stores().db)
    client = docker_client.connect()

    def progress(line: str) -> None:
        click.echo(line, err=True)

    info = images.ensure(client, spec, state.stores().home.vendor, force=force,
                         notice=None if quiet else progress, progress=None if quiet else progress)
    if as_json:
        click.echo(json.dumps({"ref": ref, "image": info.name, "id": info.id, "built": info.built}))
        return
    verb = "Built" if info.built else "Up to date:"
    click.echo(f"{verb} {info.name} ({info.id[:19]}) for {ref}")


@image.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list on stdout.")
def ls_cmd(as_json: bool) -> None:
    """List the images theoryx built."""
    from theoryx.adapters.local import docker_client, images

    rows = images.list_images(docker_client.connect())
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No theoryx images.")
    for r in rows:
        tags = ", ".join(r["tags"]) or "<untagged>"
        click.echo(f"{r['ref']:<24} {tags:<44} {r['id'][7:19]}  {r['size'] / 1e6:7.1f} MB  {r['created'][:19]}")


@image.command()
@click.option("--all", "everything", is_flag=True,
              help="Also remove the current images of the registry's processors (the next run rebuilds them).")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_obj
def prune(state: State, everything: bool, dry_run: bool, as_json: bool) -> None:
    """Remove the images theoryx built that the registry's processors no longer run.

    An image is stale when no processor of the registry builds it now (an image shared by
    several versions of a processor stays while any of them uses it). Images of processors that are not in the registry
    (--registry / THEORYX_REGISTRY) are kept, as are the images of a processor whose spec
    cannot be read or whose base image is missing; an image a container uses is reported and
    kept. Cached results stay valid: a run whose image was removed rebuilds it.
    """
    from theoryx.adapters.local import docker_client, images
    from theoryx.errors import TheoryxError
    from theoryx.spec.model import ProcessorSpec
    from theoryx.spec.registry import Registry

    registry = Registry.from_option(state.registry)
    db = state.stores().db
    specs: dict[str, ProcessorSpec | None] = {}
    for ref, _ in registry.refs():
        try:
            specs[str(ref)] = registry.load(ref, db)
        except TheoryxError:
            specs[str(ref)] = None
    done = images.prune(docker_client.connect(), specs, everything=everything, dry_run=dry_run)
    if as_json:
        def rows(group: tuple[dict[str, object], ...]) -> list[dict[str, object]]:
            return [{k: r[k] for k in ("ref", "tags", "id", "size", "why")} for r in group]

        click.echo(json.dumps({"dry_run": dry_run, "removed": rows(done.removed), "kept": rows(done.kept),
                               "failed": rows(done.failed)}))
        return
    verb = "Would remove" if dry_run else "Removed"
    for r in done.removed:
        click.echo(f"{verb} {', '.join(r['tags']) or r['id'][7:19]} ({r['ref']}, {r['size'] / 1e6:.1f} MB): {r['why']}")
    for r in done.failed:
        click.echo(f"Kept {', '.join(r['tags']) or r['id'][7:19]} ({r['ref']}): the engine refused: {r['why']}")
    freed = sum(int(r["size"]) for r in done.removed) / 1e6
    click.echo(f"{verb} {len(done.removed)} image(s), {freed:.1f} MB; kept {len(done.kept) + len(done.failed)}.")
