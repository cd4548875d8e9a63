"""``theoryx run``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from theoryx.cli.output import atomic_write
from theoryx.cli.runcore import RunOptions, build_request, error_json, render
from theoryx.cli.state import State
from theoryx.errors import TheoryxError, UsageError


@click.command()
@click.option("--ref", required=True, help="Processor ref, ns/name@version (e.g. llm/litellm@1).")
@click.option("--adapter", type=click.Choice(["local", "mock", "modal"]), default="local",
              show_default=True, help="Where to execute.")
@click.option("--plan", "plan", metavar="KEY", help="Budget plan to charge (recorded on the execution).")
@click.option("--write-prefix", default="/artifacts/outputs/", show_default=True,
              help="World path where outputs appear; {execution_id} is replaced.")
@click.option("--inputs-json", metavar="JSON", help="Inputs as a JSON object (default {}).")
@click.option("--inputs-file", metavar="PATH", help="Read the inputs JSON from PATH ('-' for stdin).")
@click.option("--adapter-opts-json", metavar="JSON", help="Adapter options (never part of the memo key).")
@click.option("--attach", "attach", multiple=True, metavar="NAME=PATH",
              help='Attach a file; reference it in the inputs as {"$attach": "NAME"}. Repeatable.')
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--stream", is_flag=True,
              help="Stream the processor's output while it runs (to stderr with --json; a hit replays it).")
@click.option("--no-cache", is_flag=True, help="Execute even when cached, and replace the cache entry.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (part of the memo key).")
@click.option("--salt", default="", envvar="THEORYX_SALT",
              help="Salt mixed into the memo key, to disown earlier results (env THEORYX_SALT).")
@click.option("--save-dir", type=click.Path(file_okay=False),
              help="Write every output into DIR by its path below the write prefix.")
@click.option("--save-first", type=click.Path(dir_okay=False), help="Write the first declared output to FILE.")
@click.option("--build", is_flag=True, help="Rebuild the processor's image before running (local adapter).")
@click.option("--registry", help="Registry directory (also THEORYX_REGISTRY).")
@click.option("--home", type=click.Path(file_okay=False), help="Store directory (also THEORYX_HOME).")
@click.pass_obj
def run(state: State, ref: str, adapter: str, plan: str | None, write_prefix: str,
        inputs_json: str | None, inputs_file: str | None, adapter_opts_json: str | None,
        attach: tuple[str, ...], as_json: bool, stream: bool, no_cache: bool, seed: int, salt: str,
        save_dir: str | None, save_first: str | None, build: bool, registry: str | None,
        home: str | None) -> None:
    """Run a processor; a repeated run is answered from the action cache."""
    from theoryx.pipeline.executor import execute

    state = State(home=home or state.home, registry=registry or state.registry)
    options = RunOptions(
        ref=ref, adapter=adapter, plan=plan, write_prefix=write_prefix, inputs_json=inputs_json,
        inputs_file=inputs_file, adapter_opts_json=adapter_opts_json, attach=attach, as_json=as_json,
        stream=stream, no_cache=no_cache, seed=seed, salt=salt, build=build, registry=state.registry,
    )
    try:
        result = execute(state.stores(), build_request(options))
        if stream:
            (sys.stderr if as_json else sys.stdout).write("\n")
        if save_dir or save_first:
            _save(state, result, save_dir, save_first)
    except TheoryxError as exc:
        if as_json:
            click.echo(error_json(exc))
        raise
    click.echo(render(result, state.stores(), as_json), nl=False)


def _save(state: State, result: Any, save_dir: str | None, save_first: str | None) -> None:
    cas = state.stores().cas
    prefix = result.record.write_prefix or ""
    if save_dir:
        for o in result.outputs:
            rel = o.path[len(prefix):] if o.path.startswith(prefix) else o.path.lstrip("/")
            atomic_write(Path(save_dir) / rel, cas.read(o.cid))
    if save_first:
        if not result.outputs:
            raise UsageError("--save-first: the run produced no outputs")
        from theoryx.spec.refs import Ref
        from theoryx.spec.registry import Registry

        spec = Registry.from_option(state.registry).load(Ref.parse(result.ref), state.stores().db)
        by_rel = {o.path[len(prefix):]: o for o in result.outputs}
        first = next((by_rel[d.path] for d in spec.outputs if d.path in by_rel), result.outputs[0])
        atomic_write(Path(save_first), cas.read(first.cid))

