"""The click-free fast path: answer ``theoryx run`` from the action cache.

A cache hit is the common case and should cost little more than starting Python, so
``main()`` first tries this path, which imports neither click nor anything a miss needs. It
handles only what a hit can use — the options in :data:`VALUE_OPTIONS` and :data:`FLAGS` — and
returns ``None`` for anything else (help, unknown or repeated options, ``--stream``,
``--save-*``, ``--no-cache``, ``--build``, bad values, a miss, any error). ``None`` means "not
handled, nothing written": the click command then runs the whole request from the start, so its
parsing, messages and exit codes stay the single source of truth. Tests check that both paths
print identical bytes and that every click option of ``run`` is classified here.
"""

from __future__ import annotations

import os
import sys

# run option -> RunOptions field; "attach" may repeat.
VALUE_OPTIONS = {
    "--ref": "ref", "--adapter": "adapter", "--plan": "plan", "--write-prefix": "write_prefix",
    "--inputs-json": "inputs_json", "--inputs-file": "inputs_file",
    "--adapter-opts-json": "adapter_opts_json", "--attach": "attach", "--seed": "seed",
    "--salt": "salt", "--registry": "registry", "--home": "home",
}
FLAGS = {"--json": "as_json"}
# Options the fast path leaves to click (they never answer from the cache alone, or print more).
DEFERRED = {"--stream", "--no-cache", "--save-dir", "--save-first", "--build", "--help", "-h"}
GLOBAL_OPTIONS = {"--home": "home", "--registry": "registry"}
ADAPTERS = ("local", "mock", "modal")


def _split(arg: str) -> tuple[str, str | None]:
    if arg.startswith("--") and "=" in arg:
        name, _, value = arg.partition("=")
        return name, value
    return arg, None


def parse(argv: list[str]) -> dict[str, object] | None:
    """Options of ``[--home H] [--registry R] run ...`` or None if the fast path can't take them."""
    values: dict[str, object] = {}
    i = 0
    while i < len(argv) and argv[i] != "run":
        name, inline = _split(argv[i])
        if name not in GLOBAL_OPTIONS:
            return None
        if inline is None:
            if i + 1 >= len(argv):
                return None
            inline, i = argv[i + 1], i + 1
        values["global_" + GLOBAL_OPTIONS[name]] = inline
        i += 1
    if i >= len(argv):
        return None
    attach: list[str] = []
    i += 1
    while i < len(argv):
        name, inline = _split(argv[i])
        if name in FLAGS and inline is None:
            values[FLAGS[name]] = True
        elif name in VALUE_OPTIONS:
            if inline is None:
                if i + 1 >= len(argv):
                    return None
                inline, i = argv[i + 1], i + 1
            field = VALUE_OPTIONS[name]
            if field == "attach":
                attach.append(inline)
            elif field in values:
                return None  # click's last-wins semantics: leave repeated options to it
            else:
                values[field] = inline
        else:
            return None
        i += 1
    values["attach"] = tuple(attach)
    if values.get("inputs_file") == "-":
        return None  # stdin can be read once: if this were a miss, click could not read it again
    if "ref" not in values or values.get("adapter", "local") not in ADAPTERS:
        return None
    try:
        values["seed"] = int(str(values.get("seed", "0")), 10)
    except ValueError:
        return None
    return values


def try_run(argv: list[str]) -> bool:
    """Print the result and return True if ``argv`` is a ``run`` answered from the cache."""
    values = parse(argv)
    if values is None:
        return False
    from theoryx.cli.runcore import RunOptions, build_request, render
    from theoryx.errors import TheoryxError
    from theoryx.pipeline.executor import NotAHit, execute
    from theoryx.store.handle import open_stores

    # Same precedence as click: run's option, then the group's, then the environment.
    home = values.pop("home", None) or values.pop("global_home", None) or os.environ.get("THEORYX_HOME")
    registry = values.pop("registry", None) or values.pop("global_registry", None)
    for key in ("global_home", "global_registry"):
        values.pop(key, None)
    values.setdefault("salt", os.environ.get("THEORYX_SALT", ""))
    try:
        options = RunOptions(registry=str(registry) if registry else None, **values)  # type: ignore[arg-type]
        stores = open_stores(str(home) if home else None)
        result = execute(stores, build_request(options), hit_only=True)
    except (NotAHit, TheoryxError, OSError):
        return False
    sys.stdout.write(render(result, stores, options.as_json))
    sys.stdout.flush()
    return True
