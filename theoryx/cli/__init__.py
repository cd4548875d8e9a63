"""The ``theoryx`` command line: a thin layer over the Python API.

The group builds the :class:`State` (home and registry options); commands receive it. Only
this package decides exit codes: 0 success, 1 a theoryx error, 2 a usage error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import TheoryxError
from .state import State


class Group(click.Group):
    """Maps :class:`TheoryxError` to ``Error: <message>`` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TheoryxError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="THEORYX_HOME", type=click.Path(file_okay=False),
              help="Store directory (env THEORYX_HOME; default $XDG_CACHE_HOME/theoryx).")
@click.option("--registry", envvar="THEORYX_REGISTRY",
              help="Registry directory (env THEORYX_REGISTRY; default ./registry, else the installed one).")
@click.version_option(package_name="theoryx", prog_name="theoryx")
@click.pass_context
def cli(ctx: click.Context, home: str | None, registry: str | None) -> None:
    """theoryx: run processors like build actions — content-addressed, cached, budgeted, audited."""
    ctx.obj = State(home=home, registry=registry)


def _register() -> None:
    from . import audit, inspect, plan, registry, run, store

    cli.add_command(run.run)
    for cmd in (inspect.cat, inspect.show, inspect.ls, inspect.export, inspect.logs):
        cli.add_command(cmd)
    cli.add_command(registry.registry)
    for module in (plan, store, audit):
        for command in module.COMMANDS:
            cli.add_command(command)
    try:
        from . import image
    except ImportError:  # the image commands arrive with the local adapter
        return
    cli.add_command(image.image)


_register()


def main() -> None:
    """Console entry point."""
    cli.main(args=sys.argv[1:], prog_name="theoryx")
