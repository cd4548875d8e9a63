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
