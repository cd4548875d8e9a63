"""``theoryx run``: the click command, built from :data:`theoryx.cli.options.RUN_OPTIONS`.

Click parses (and owns ``--help`` and usage errors); :func:`theoryx.cli.runcore.run_command`
does the rest, as it does for the fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from theoryx.cli.options import RUN_OPTIONS, Option, not_empty
from theoryx.cli.runcore import run_command
from theoryx.cli.state import State

F = Callable[..., Any]


def click_option(o: Option) -> Callable[[F], F]:
    """The click decorator for ``o``."""
    kw: dict[str, Any] = {"help": o.help}
    if o.kind == "flag":
        kw["is_flag"] = True
    elif o.kind == "multiple":
        kw["multiple"] = True
    if o.required:
        kw["required"] = True
    if o.default is not None:
        kw["default"] = o.default
    if o.show_default:
        kw["show_default"] = True
    if o.metavar:
        kw["metavar"] = o.metavar
    if o.envvar:
        kw["envvar"] = o.envvar
    types: dict[str, Any] = {
        "int": int, "choice": click.Choice(list(o.choices)),
        "dir": click.Path(file_okay=False), "file": click.Path(dir_okay=False),
    }
    if o.type in types:
        kw["type"] = types[o.type]
    if o.type in ("dir", "file") or o.dest in NOT_EMPTY:
        kw["callback"] = not_empty
    return click.option(o.flag, o.dest, **kw)


NOT_EMPTY = frozenset({"registry", "remote", "inputs_file", "items"})
"""Options besides paths checked by ``click.Path`` that refuse the empty string (it fell back to
the default registry or remote, or read the current directory, silently)."""


def with_options(options: tuple[Option, ...]) -> Callable[[F], F]:
    """Decorate a command with the click options of ``options``, in that order."""

    def decorate(fn: F) -> F:
        for o in reversed(options):
            fn = click_option(o)(fn)
        return fn

    return decorate


@click.command()
@with_options(RUN_OPTIONS)
@click.pass_obj
def run(state: State, /, **values: Any) -> None:
    """Run a processor; a repeated run is answered from the action cache."""
    values["home"] = values["home"] or state.home
    values["registry"] = values["registry"] or state.registry
    code = run_command(values)
    if code:
        click.get_current_context().exit(code)
