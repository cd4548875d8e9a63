"""The ``theoryx`` command line: a thin layer over the Python API.

The group builds the :class:`State` (home and registry options); commands receive it. Only
this package decides exit codes: 0 success, 1 a theoryx error, 2 a usage error. It also shows
the library's notices on stderr (:mod:`theoryx.cli.notices`) and words errors with
the CLI's flags (:mod:`theoryx.cli.messages`).
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click

from theoryx.cli import main as entry
from theoryx.cli import messages, notices
from theoryx.cli.options import not_empty
from theoryx.cli.state import State
from theoryx.errors import TheoryxError, clipped

# Command name -> module below theoryx.cli that defines it (as an attribute of that name, or in
# its ``COMMANDS`` list). Modules are imported only when their command runs, so a cache hit
# pays for ``run`` alone.
LAZY: dict[str, str] = {
    "run": "run", "map": "map", "cat": "inspect", "show": "inspect", "ls": "inspect", "export": "inspect",
    "logs": "inspect", "registry": "registry", "image": "image", "plan": "plan",
    "gc": "store", "verify": "store", "pin": "store", "unpin": "store", "pins": "store",
    "du": "store", "stats": "store", "audit": "audit", "explain": "audit", "receipt": "audit",
    "keygen": "audit", "verify-receipt": "audit", "remote": "remote", "ui": "ui",
}


class Group(click.Group):
    """Loads commands lazily and maps :class:`TheoryxError` to ``Error: <message>`` (worded by
    :func:`theoryx.cli.messages.message`) and its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in LAZY if self.get_command(ctx, n) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = LAZY.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"theoryx.cli.{module_name}")
        for command in getattr(module, "COMMANDS", []):
            if command.name == cmd_name:
                return command  # type: ignore[no-any-return]
        found = getattr(module, cmd_name.replace("-", "_"), None)
        return found if isinstance(found, click.Command) else None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.UsageError as exc:    # the group's own options (--home a-file)
            _usage_json(exc, "--json" in args)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            try:
                with notices.shown():
                    return super().invoke(ctx)
            except click.exceptions.UsageError as exc:    # a command's options and arguments
                exc.message = clipped(exc.message)  # type: ignore[misc]  # Final in click's annotations only
                _usage_json(exc, as_json)
                raise
            except (TheoryxError, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
                raise
            except KeyboardInterrupt as stop:
                if as_json:         # the one JSON document still says what happened (as run's does)
                    from theoryx.errors import interruption

                    click.echo(json.dumps(interruption(stop).envelope()))
                ctx.exit(entry.aborted())
            except BrokenPipeError:
                if not entry.stdout_gone():
                    raise
                ctx.exit(entry.stdout_closed())
            except Exception as unexpected:  # never a traceback: a one-line ERR_INTERNAL (or full disk)
                from theoryx.cli.runcore import as_theoryx_error

                raise as_theoryx_error(unexpected) from unexpected
        except TheoryxError as exc:
            if as_json and not exc.reported:
                click.echo(json.dumps(exc.envelope(messages.to_dict(exc))))
            click.echo(f"Error: {messages.message(exc)}", err=True)
            ctx.exit(exc.exit_code)


def _usage_json(exc: click.exceptions.UsageError, as_json: bool) -> None:
    """Under ``--json``, click's own usage errors (a bad or missing option value) print the
    ``ERR_USAGE`` envelope on stdout too, as every other error does; click still explains on
    stderr and exits 2."""
    if as_json:
        from theoryx.errors import UsageError

        click.echo(json.dumps({"status": "error", "execution_id": None,
                               "error": messages.to_dict(UsageError(exc.format_message()))}))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="THEORYX_HOME", type=click.Path(file_okay=False), callback=not_empty,
              help="Store directory (env THEORYX_HOME; default $XDG_CACHE_HOME/theoryx).")
@click.option("--registry", envvar="THEORYX_REGISTRY", callback=not_empty,
              help="Registry directory (env THEORYX_REGISTRY; default ./registry, else the installed one).")
@click.version_option(package_name="theoryx", prog_name="theoryx")
@click.pass_context
def cli(ctx: click.Context, home: str | None, registry: str | None) -> None:
    """theoryx: run processors like build actions — content-addressed, cached, budgeted, audited."""
    ctx.obj = State(home=home, registry=registry)


def main() -> None:
    """Run the click command line (``theoryx.cli.main`` tries the cache-hit fast path first)."""
    cli.main(args=sys.argv[1:], prog_name="theoryx")
