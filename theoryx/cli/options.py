"""The options of ``theoryx run``, declared once.

The click command (:mod:`theoryx.cli.run`) builds its decorators from :data:`RUN_OPTIONS`, and the
click-free fast path (:mod:`theoryx.cli.fastpath`) parses ``argv`` with the same table, so both
accept the same options with the same defaults and both hand the same values to
:func:`theoryx.cli.runcore.run_command`. Defaults come from the library (adapter names, the write
prefix), never from literals repeated here. Imports no click.
"""

from __future__ import annotations

from dataclasses import dataclass

from theoryx.adapters import NAMES as ADAPTER_NAMES
from theoryx.pipeline.request import DEFAULT_ADAPTER
from theoryx.pipeline.writeprefix import DEFAULT as DEFAULT_WRITE_PREFIX

TYPE_CHECKING = False  # typing stays unimported at run time (lean hit path)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class Option:
    """One command-line option. ``kind``: "value", "flag" (boolean) or "multiple" (repeatable
    value). ``type``: "str", "int", "choice" (one of ``choices``), "dir" or "file" (a path that,
    if it exists, must be a directory / must not be one, as ``click.Path`` checks)."""

    flag: str
    dest: str
    help: str
    kind: str = "value"
    type: str = "str"
    default: Any = None
    required: bool = False
    metavar: str | None = None
    envvar: str | None = None
    show_default: bool = False
    choices: tuple[str, ...] = ()

    @property
    def initial(self) -> Any:
        """The value when the option is not given (before ``envvar``)."""
        if self.kind == "flag":
            return False
        if self.kind == "multiple":
            return ()
        return self.default


RUN_OPTIONS: tuple[Option, ...] = (
    Option("--ref", "ref", "Processor ref, ns/name@version (e.g. llm/litellm@1).", required=True),
    Option("--adapter", "adapter", "Where to execute.", type="choice", choices=ADAPTER_NAMES,
           default=DEFAULT_ADAPTER, show_default=True),
    Option("--plan", "plan", "Budget plan to charge (recorded on the execution).", metavar="KEY"),
    Option("--write-prefix", "write_prefix", "World path where outputs appear; {execution_id} is replaced.",
           default=DEFAULT_WRITE_PREFIX, show_default=True),
    Option("--inputs-json", "inputs_json", "Inputs as a JSON object (default {}).", metavar="JSON"),
    Option("--inputs-file", "inputs_file", "Read the inputs JSON from PATH ('-' for stdin).", metavar="PATH"),
    Option("--adapter-opts-json", "adapter_opts_json", "Adapter options (never part of the memo key).",
           metavar="JSON"),
    Option("--attach", "attach", 'Attach a file; reference it in the inputs as {"$attach": "NAME"}. Repeatable.',
           kind="multiple", metavar="NAME=PATH"),
    Option("--json", "as_json", "Print exactly one JSON object on stdout.", kind="flag"),
    Option("--stream", "stream",
           "Stream the processor's output while it runs (to stderr with --json; a hit replays it).", kind="flag"),
    Option("--no-cache", "no_cache", "Execute without looking the cache up (recorded as cache "
           "\"bypass\"), and replace the cache entry.", kind="flag"),
    Option("--seed", "seed", "Seed (part of the memo key).", type="int", default=0, show_default=True),
    Option("--salt", "salt", "Salt mixed into the memo key, to disown earlier results (env THEORYX_SALT).",
           default="", envvar="THEORYX_SALT"),
    Option("--save-dir", "save_dir", "Write every output into DIR by its path below the write prefix.",
           type="dir"),
    Option("--save-first", "save_first", "Write the first declared output to FILE.", type="file"),
    Option("--build", "build", "Rebuild the processor's image before running (local adapter).", kind="flag"),
    Option("--remote", "remote", "Team cache URL (default THEORYX_REMOTE, else url in <home>/remote.json).",
           metavar="URL"),
    Option("--registry", "registry", "Registry directory (also THEORYX_REGISTRY)."),
    Option("--home", "home", "Store directory (also THEORYX_HOME).", type="dir"),
)

BY_FLAG = {o.flag: o for o in RUN_OPTIONS}

# ``theoryx map``: every option of ``run`` that applies to all items alike, then its own.
_SHARED_WITH_MAP = ("ref", "adapter", "plan", "write_prefix", "adapter_opts_json", "seed", "salt", "no_cache",
                    "build", "registry", "home")
MAP_OPTIONS: tuple[Option, ...] = (
    *(o for o in RUN_OPTIONS if o.dest in _SHARED_WITH_MAP),
    Option("--items", "items", "Items as JSON Lines: one {\"inputs\": {...}, \"attach\": {NAME: PATH}, "
           "\"id\": LABEL} per line ('-' for stdin; attach paths relative to the file).", required=True,
           metavar="FILE|-"),
    Option("--jobs", "jobs", "Items in flight at once (default: the number of CPUs).", type="int"),
    Option("--out", "out", "Write the result lines to FILE instead of stdout (a regular file is replaced "
           "whole when the batch ends).", type="file"),
    Option("--unordered", "unordered", "Write results as items finish instead of in input order.", kind="flag"),
    Option("--fail-fast", "fail_fast", "Stop at the first failed item.", kind="flag"),
    Option("--quiet", "quiet", "No progress and no summary on stderr.", kind="flag"),
)

# The group's own options (``theoryx [--home H] [--registry R] run ...``), with their env vars.
GROUP_OPTIONS: dict[str, tuple[str, str]] = {
    "--home": ("home", "THEORYX_HOME"),
    "--registry": ("registry", "THEORYX_REGISTRY"),
}


def not_empty(ctx: Any, param: Any, value: Any) -> Any:
    """A click callback: a path or key option given as the empty string is refused (it would mean
    the current directory, or quietly the default, never what was meant)."""
    if value == "":
        import click

        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def defaults() -> dict[str, Any]:
    """Every dest with the value it has when its option is not given (env vars not applied)."""
    return {o.dest: o.initial for o in RUN_OPTIONS}
