"""Refs, write prefixes, execution ids, canonical bytes, the error tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from theoryx_testing import REPO

from theoryx import errors
from theoryx.core import ids
from theoryx.core.canonical import canonical_bytes, canonical_digest
from theoryx.errors import RefError, WritePrefixError
from theoryx.pipeline import writeprefix
from theoryx.spec.refs import Ref


def test_ref_round_trip() -> None:
    ref = Ref.parse("llm/litellm@1")
    assert (ref.ns, ref.name, ref.version, str(ref)) == ("llm", "litellm", "1", "llm/litellm@1")


@pytest.mark.parametrize("bad", ["litellm", "llm/litellm", "llm/@1", "/x@1", "LLM/x@1", "a/b@", "a/b/c@1", "a/../b@1"])
def test_bad_refs_are_rejected(bad: str) -> None:
    with pytest.raises(RefError):
        Ref.parse(bad)


def test_write_prefix_rules() -> None:
    assert writeprefix.expand("/artifacts/runs/{execution_id}/", "abc") == "/artifacts/runs/abc/"
    bad_prefixes = ("/artifacts/", "/artifacts/inputs/x/", "/artifacts/execution/",
                    "/artifacts/{user}/", "/artifacts/a\\b/")
    for bad in bad_prefixes:
        with pytest.raises(WritePrefixError):
            writeprefix.check(bad)


def test_execution_ids_sort_by_time() -> None:
    a = ids.new_execution_id(1_700_000_000_000)
    b = ids.new_execution_id(1_700_000_000_001)
    assert a < b and len(a) == 26 and ids.is_execution_id(a)
    assert ids.timestamp_ms(a) == 1_700_000_000_000


def test_execution_ids_are_the_ulid_layout_of_time_and_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id is the 130-bit value (ms << 80 | 80 random bits) in Crockford base32, most
    significant first: checked against a plain digit-by-digit encoding, edge values included."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

    def reference(ms: int, rnd: bytes) -> str:
        value = (ms << 80) | int.from_bytes(rnd, "big")
        return "".join(alphabet[(value >> (5 * i)) & 31] for i in reversed(range(26)))

    cases = [(0, b"\0" * 10), (2**48 - 1, b"\xff" * 10), (1_700_000_000_000, bytes(range(10)))]
    cases += [(int.from_bytes(os.urandom(6), "big"), os.urandom(10)) for _ in range(2000)]
    for ms, rnd in cases:
        monkeypatch.setattr(ids.os, "urandom", lambda n, rnd=rnd: rnd)
        made = ids.new_execution_id(ms)
        assert made == reference(ms, rnd) and ids.timestamp_ms(made) == ms


def test_canonical_bytes_are_rfc8785() -> None:
    assert canonical_bytes({"b": 1, "a": [1.0, "é", 1e21]}) == '{"a":[1,"é",1e+21],"b":1}'.encode()
    assert canonical_digest({"a": 1, "b": 2}) == canonical_digest({"b": 2, "a": 1})


def test_error_codes_are_unique_stable_and_documented() -> None:
    classes = errors.all_error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    doc = errors.__doc__ or ""
    for cls in classes:
        assert cls.code.startswith("ERR_")
        assert cls.code in doc and cls.__name__ in doc, cls


def test_public_surface() -> None:
    import theoryx

    assert sorted(theoryx.__all__) == ["Item", "ItemResult", "Output", "RunRequest", "RunResult", "Session",
                                       "TheoryxError", "__version__", "errors", "run"]
    for name in theoryx.__all__:
        assert getattr(theoryx, name) is not None
    assert callable(theoryx.run)


def test_every_lazy_command_resolves_to_a_command_of_that_name() -> None:
    import click

    from theoryx.cli.app import LAZY, cli

    ctx = click.Context(cli)
    for name in LAZY:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name
    assert cli.list_commands(ctx) == sorted(LAZY)


def test_a_schemas_validator_is_built_once_and_never_shared_with_another_schema() -> None:
    from theoryx.pipeline import miss

    a = {"type": "object", "required": ["x"]}
    b = {"type": "object", "required": ["y"]}
    assert miss._validator(a) is miss._validator(a)
    assert miss._validator(b) is not miss._validator(a)
    assert not miss._validator(a).is_valid({"y": 1}) and miss._validator(b).is_valid({"y": 1})
    same_id = {"type": "string"}                       # a new schema at a recycled address
    miss._VALIDATORS[id(same_id)] = ({"type": "object"}, miss._validator(a))
    assert miss._validator(same_id).is_valid("text")


@pytest.mark.parametrize("name", ["a\x7fb", "c\u2028d", "e\u0085f", "g\u2029h", "tab\there", "back\\slash"])
def test_output_names_with_controls_or_line_separators_are_rejected(tmp_path: Path, name: str) -> None:
    from theoryx.pipeline.ingest import _walk
    from theoryx.spec.model import OutputLimits

    (tmp_path / name).write_text("x")
    with pytest.raises(errors.OutputRejected, match="control characters"):
        _walk(tmp_path, OutputLimits(), "/artifacts/outputs/")


def test_an_output_whose_world_path_the_index_cannot_key_is_rejected(tmp_path: Path) -> None:
    """LMDB keys hold 511 bytes: a longer world path crashed the record (ERR_INTERNAL, no record)."""
    from theoryx.pipeline.ingest import MAX_WORLD_PATH, _walk
    from theoryx.spec.model import OutputLimits

    deep = tmp_path / ("a" * 200) / ("b" * 200)
    deep.mkdir(parents=True)
    (deep / ("c" * 200)).write_text("x")
    with pytest.raises(errors.OutputRejected, match=f"more than {MAX_WORLD_PATH}"):
        _walk(tmp_path, OutputLimits(), "/artifacts/outputs/")
    ok = tmp_path.parent / "ok"
    (ok / ("a" * 200)).mkdir(parents=True)
    (ok / ("a" * 200) / ("é" * 100)).write_text("x")             # 200 + 200 UTF-8 bytes + prefix: fits
    assert len(_walk(ok, OutputLimits(), "/artifacts/outputs/")) == 1


def test_a_home_opened_before_fork_is_refused_in_the_child_with_a_hint(tmp_path: Path) -> None:
    """An LMDB environment must not cross fork(): the child's use took the parent's reader
    slots (MDB_READERS_FULL for every process on the home) and a fresh open said only 'already
    open'. Both are now a StoreError naming the way out."""
    import multiprocessing

    import theoryx

    home = tmp_path / "home"
    msg = {"messages": [{"role": "user", "content": "hi"}]}
    theoryx.run("llm/litellm@1", inputs=msg, adapter="mock", home=home, registry=str(REPO / "registry"))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_run_in_child, (str(home),)).get(timeout=120)
    assert got.startswith("StoreError") and "forked" in got and "'spawn'" in got, got


def _run_in_child(home: str) -> str:
    import theoryx

    try:
        theoryx.run("llm/litellm@1", inputs={"messages": [{"role": "user", "content": "hi"}]}, adapter="mock",
                    home=home, registry=str(REPO / "registry"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ran"


def test_coalesced_warnings_report_the_first_of_each_topic_then_how_many_more() -> None:
    from notices_testing import captured_notices, texts

    from theoryx.core import notices

    coalesced = notices.Coalesced()
    with captured_notices() as records:
        for n in range(3):
            coalesced.warning("things ignored", f"thing {n} ignored")
        coalesced.warning("others failed", "other failed")
        assert coalesced.count("things ignored") == 3 and coalesced.count("none") == 0
        coalesced.close()
        coalesced.warning("things ignored", "thing again")     # counting starts again after close
    assert texts(records, "warning") == ["thing 0 ignored", "other failed",
                                         "2 more things ignored (the first is reported above)", "thing again"]


def test_strict_json_refuses_numbers_beyond_a_double() -> None:
    """`1e999` read as infinity: an items line's id became "inf" and a run's inputs failed later
    with a less clear error. I-JSON (RFC 7493) refuses numbers a double cannot hold."""
    from theoryx.core import strictjson

    for text in ('{"id": 1e999}', "[-2E400]", "1e309"):
        with pytest.raises(ValueError, match="beyond the range of a double"):
            strictjson.loads(text)
    assert strictjson.loads('{"a": 1.5e308, "b": -1e-400, "c": 10000000000000000000000}') == \
        {"a": 1.5e308, "b": -0.0, "c": 10**22}


def test_durations_and_sizes_take_ascii_digits_only() -> None:
    """`٣h` (an Arabic-Indic three) was read as 3 hours by `gc --max-age`, and `٥G` as a size;
    money amounts already refused such digits."""
    from theoryx.core.durations import parse_duration, parse_size

    for bad in ("\u0663h", "1\u0660m", "\uff13s"):
        with pytest.raises(errors.UsageError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(errors.UsageError, match="not a size"):
        parse_size("\u0665G")
    assert (parse_duration(" 2h "), parse_size("500M")) == (7200.0, 500 * 1024 ** 2)
