"""The click-free path of ``theoryx run``: parse ``argv`` with the options table and run.

Starting click costs more than answering a cache hit, so ``main()`` first offers ``argv`` to
:func:`try_run`. It takes only a well-formed ``[--home H] [--registry R] run ...`` whose every
option is in :data:`theoryx.cli.options.RUN_OPTIONS` with a valid value, and then runs it to the
end — hit or miss — through :func:`theoryx.cli.runcore.run_command`, exactly as the click
command would. Anything else (help, unknown or repeated options, a bad value, a missing
``--ref``) returns None *before anything is read or written*, and click takes over with its own
messages. Tests check that both paths print identical bytes.
"""

from __future__ import annotations

import os

from theoryx.cli.options import BY_FLAG, GROUP_OPTIONS, RUN_OPTIONS, Option, defaults

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any


def _split(arg: str) -> tuple[str, str | None]:
    if arg.startswith("--") and "=" in arg:
        name, _, value = arg.partition("=")
        return name, value
    return arg, None


def _convert(o: Option, raw: str) -> Any:
    """The value of ``o`` given as ``raw``, or raise ValueError where click would refuse it."""
    if o.type == "int":
        return int(raw, 10)
    if o.type == "choice" and raw not in o.choices:
        raise ValueError(raw)
    if o.type in ("dir", "file") and (raw == "" or (os.path.exists(raw) and os.path.isdir(raw) != (o.type == "dir"))):
        raise ValueError(raw)
    return raw


def parse(argv: list[str]) -> dict[str, Any] | None:
    """Option values (keyed by dest, ``home``/``registry`` merged as click merges them) of a
    ``run`` the fast path can take, or None."""
    group: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i] != "run":
        name, inline = _split(argv[i])
        if name not in GROUP_OPTIONS or name in group:
            return None
        if inline is None:
            if i + 1 >= len(argv):
                return None
            inline, i = argv[i + 1], i + 1
        if inline == "":
            return None             # click refuses an empty value with its usage error
        group[name] = inline
        i += 1
    if i >= len(argv):
        return None
    values = defaults()
    given: set[str] = set()
    attach: list[str] = []
    i += 1
    while i < len(argv):
        name, inline = _split(argv[i])
        o = BY_FLAG.get(name)
        if o is None:
            return None
        if o.kind == "flag":
            if inline is not None or o.dest in given:
                return None
            values[o.dest] = True
        else:
            if inline is None:
                if i + 1 >= len(argv):
                    return None
                inline, i = argv[i + 1], i + 1
            if inline == "":
                return None         # click's own checks say what is wrong with an empty value
            if o.kind == "multiple":
                attach.append(inline)
            elif o.dest in given:
                return None  # click's last-wins semantics: leave repeated options to it
            else:
                try:
                    values[o.dest] = _convert(o, inline)
                except ValueError:
                    return None
        given.add(o.dest)
        i += 1
    values["attach"] = tuple(attach)
    for o in RUN_OPTIONS:
        if o.required and o.dest not in given:
            return None
        if o.envvar and o.dest not in given and os.environ.get(o.envvar):
            values[o.dest] = _env_value(o)
            if values[o.dest] is None:
                return None
    for flag, (dest, envvar) in GROUP_OPTIONS.items():
        fallback = group.get(flag) or os.environ.get(envvar) or None
        if values[dest] is None:
            if fallback is not None and dest == "home" and os.path.isfile(fallback):
                return None  # click.Path(file_okay=False) refuses it
            values[dest] = fallback
    return values


def _env_value(o: Option) -> Any:
    try:
        return _convert(o, os.environ[o.envvar or ""])
    except ValueError:
        return None


def try_run(argv: list[str]) -> int | None:
    """Run ``argv`` if the fast path can take it and return the exit code; None if it cannot
    (nothing was read or written)."""
    values = parse(argv)
    if values is None:
        return None
    from theoryx.cli.runcore import run_command

    return run_command(values)
