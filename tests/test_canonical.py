"""The hit-path RFC 8785 encoder agrees byte for byte with the ``rfc8785`` package."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from theoryx.core.canonical import CanonicalizationError, canonical_bytes

floats = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_matches_rfc8785_on_generated_values(value: object) -> None:
    assert canonical_bytes(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("x", [
    0.0, -0.0, 1.0, -1.5, 0.1, 1e21, 1e20, 123456789012345680000.0, 1e-6, 1e-7, 5e-324,
    1.7976931348623157e308, 0.000123, 1234.5678, 2.0**53, 9007199254740993.0, 100.0, 1e-5, 0.5,
])
def test_number_formatting_edge_cases(x: float) -> None:
    assert canonical_bytes(x) == rfc8785.dumps(x)


def test_control_characters_and_key_order() -> None:
    value = {"\u00e9": 1, "a": "\x00\x1f\x7f\u2028\"\\", "\U0001f600": 2, "\uff61": 3}
    assert canonical_bytes(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**53, {1: "x"}, object(), "\ud800"])
def test_values_without_a_canonical_form_are_rejected(bad: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes(bad)


def test_a_pre_encoded_part_gives_the_same_bytes_as_encoding_it_inline() -> None:
    from theoryx.core.canonical import Encoded, canonical_bytes

    part = {"b": [1, 2.5, "é\n"], "a": None, "z": {"y": True}}
    whole = {"spec": part, "x": 1}
    assert canonical_bytes({**whole, "spec": Encoded.of(part)}) == canonical_bytes(whole)


def test_an_action_built_twice_from_one_spec_has_one_key_and_the_spec_digest_of_its_fields() -> None:
    from theoryx_testing import REGISTRY

    from theoryx.core.canonical import canonical_bytes, canonical_digest, digest
    from theoryx.pipeline.action import build
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry.from_option(str(REGISTRY)).load(Ref.parse("llm/litellm@1"))
    kw = {"image": {"kind": "mock"}, "env": {"class": "mock"}, "inputs": {"a": 1}, "write_prefix": "/artifacts/o/",
          "seed": 0}
    first, second = build(spec, **kw), build(spec, **kw)  # type: ignore[arg-type]
    assert first.memo_key == second.memo_key == digest(canonical_bytes(first.body))
    assert first.body["spec_digest"] == canonical_digest(spec.execution_fields())


def test_actions_sharing_image_and_env_objects_encode_exactly_as_whole_bodies() -> None:
    """A batch's items share the resolved image/env dicts, encoded once: every item's bytes must
    still be the RFC 8785 encoding of its whole body, whatever the keys (astral, BMP, ASCII)."""
    from theoryx_testing import REGISTRY

    from theoryx.core.canonical import canonical_bytes, digest
    from theoryx.pipeline.action import build
    from theoryx.spec.refs import Ref
    from theoryx.spec.registry import Registry

    spec = Registry.from_option(str(REGISTRY)).load(Ref.parse("llm/litellm@1"))
    image = {"kind": "mock", "\U0001f600": 1, "\uff61": 2, "é": [1.5, None]}
    env = {"class": "mock", "Z": "z"}
    keys = set()
    for i in range(5):
        action = build(spec, image=image, env=env, inputs={"n": i, "\U0001f600": "x", "\ue000": i},
                       write_prefix="/artifacts/o/", seed=i)
        assert action.data == canonical_bytes(action.body)
        assert action.memo_key == digest(action.data)
        keys.add(action.memo_key)
    assert len(keys) == 5
    same = build(spec, image=dict(image), env=dict(env), inputs={"n": 4, "\U0001f600": "x", "\ue000": 4},
                 write_prefix="/artifacts/o/", seed=4)
    assert same.memo_key in keys, "equal content in other objects keys the same"


# --- The fast path (the ``json`` C encoder behind a type walk) against the reference encoder ---

def reference(value: object) -> bytes | str:
    """What the reference (pure Python) encoder gives: the bytes, or the error message."""
    from theoryx.core.canonical import _encode

    out: list[str] = []
    try:
        _encode(value, out)
        return "".join(out).encode("utf-8")
    except CanonicalizationError as exc:
        return f"CanonicalizationError: {exc}"
    except UnicodeEncodeError:
        return "CanonicalizationError: strings must not contain lone surrogates"


def encoded(value: object) -> bytes | str:
    """What :func:`canonical_bytes` gives, in the form of :func:`reference`."""
    try:
        return canonical_bytes(value)
    except CanonicalizationError as exc:
        return f"CanonicalizationError: {exc}"


def naive(value: object) -> str:
    """What ``json.dumps`` alone would give: the fast path must not be taken where it differs."""
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def took_fast_path(value: object, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether ``canonical_bytes(value)`` was answered without the reference encoder."""
    import theoryx.core.canonical as canonical

    calls: list[object] = []
    real = canonical._encode

    def spy(v: object, out: list[str]) -> None:
        calls.append(v)
        real(v, out)

    with monkeypatch.context() as m:
        m.setattr(canonical, "_encode", spy)
        encoded(value)
    return not calls


class Shouting(int):
    """An int subclass whose ``str`` differs from its digits (as in ``class E(int, Enum)``)."""

    def __str__(self) -> str:
        return "LOUD"


class Keyed(dict):  # type: ignore[type-arg]
    """A dict subclass whose ``[]`` differs from its items (the reference encoder calls ``[]``)."""

    def __getitem__(self, key: object) -> object:
        return "via getitem"


# Keys and strings mixing the characters where the encoders could part: ASCII, BMP below the
# surrogates, the private use area (U+E000..U+FFFF, above surrogates in code points, below them
# in UTF-16), astral characters, controls, DEL, U+2028/2029, quotes and backslashes.
tricky = st.text(alphabet=st.sampled_from(
    "aZ0 \"\\/\x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f\u00e9\u2028\u2029\ud7ff\ue000\uff61\uffff\U00010000\U0001f600"))
any_text = tricky | text
any_float = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.7, 1e-4, 9.999999999999999e-05, -1e-4, 1e-7, 1e15, 1e16, 1e21, 2.0**53 - 1,
     2.0**53, -(2.0**53 - 1), 4503599627370495.5, 0.30000000000000004]) | \
    st.integers(-(2**53), 2**53).map(float)
safe_ints = ints | st.sampled_from([2**53 - 1, -(2**53 - 1), 0, -1])
plain_leaves = st.none() | st.booleans() | safe_ints | any_float | any_text
plain_values = st.recursive(
    plain_leaves,
    lambda children: st.lists(children, max_size=5) | st.lists(children, max_size=5).map(tuple)
    | st.dictionaries(any_text, children, max_size=5),
    max_leaves=30,
)
small_values = st.recursive(
    plain_leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=6,
)
# Leaves without a canonical form, or whose types the reference encoder treats its own way.
odd_leaves = st.sampled_from([
    2**53, -(2**53), 10**30, math.nan, math.inf, -math.inf, "\ud800", "a\udfffb", object(), b"bytes",
    Shouting(7), {1: "int key"}, {True: "bool key"}, {None: 1}, {("t",): 1}, {"\ud800": 1}, {1.5: 2},
    Keyed(a=1), {"\U0001f600": 1, "\ue000": 2}, {"ok": 1, 2: "mixed keys"},
])
odd_values = st.recursive(
    plain_leaves | odd_leaves,
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20,
)


def jsonable(value: object) -> Any:
    """``value`` with tuples as lists, the form ``rfc8785.dumps`` takes."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


@settings(max_examples=600, deadline=None)
@given(plain_values)
def test_the_fast_path_gives_the_reference_bytes_and_rfc8785s_on_generated_values(value: object) -> None:
    expected = reference(value)
    assert encoded(value) == expected
    assert expected == rfc8785.dumps(jsonable(value))


@settings(max_examples=600, deadline=None)
@given(odd_values)
def test_the_fast_path_gives_the_reference_bytes_or_error_on_generated_odd_values(value: object) -> None:
    assert encoded(value) == reference(value)


def with_parts(value: object, data: st.DataObject) -> object:
    """``value`` with some of its items replaced by pre-encoded parts (their reference text)."""
    from theoryx.core.canonical import Encoded

    def part(v: object) -> object:
        if data.draw(st.integers(0, 3)) == 0:
            text = reference(v)
            assert isinstance(text, bytes)
            return Encoded(text.decode("utf-8"))
        return with_parts(v, data)

    if isinstance(value, dict):
        return {k: part(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(part(v) for v in value)
    return value


@settings(max_examples=300, deadline=None)
@given(plain_values.filter(lambda v: isinstance(reference(v), bytes)), st.data())
def test_pre_encoded_parts_anywhere_give_the_bytes_of_the_value_inline(value: object, data: st.DataObject) -> None:
    spliced = with_parts(value, data)
    assert encoded(spliced) == reference(spliced) == reference(value) == rfc8785.dumps(jsonable(value))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(any_text, st.tuples(small_values, st.booleans()), min_size=1, max_size=8))
def test_objects_with_top_level_parts_give_the_bytes_of_the_object_inline(
        members: dict[str, tuple[object, bool]]) -> None:
    """The shape of an action's pre-image: parts as values of the top-level object."""
    from theoryx.core.canonical import Encoded

    inline = {k: v for k, (v, _) in members.items()}
    value = {k: Encoded(canonical_bytes(v).decode("utf-8")) if part else v for k, (v, part) in members.items()}
    expected = reference(inline)
    assert encoded(value) == reference(value) == expected
    if isinstance(expected, bytes):
        assert expected == rfc8785.dumps(jsonable(inline))


def test_every_code_point_is_escaped_by_the_c_encoder_as_by_the_reference() -> None:
    from _json import encode_basestring  # the fast path's string encoder

    from theoryx.core.canonical import _string

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert encode_basestring(every) == _string(every)
    assert canonical_bytes(every) == rfc8785.dumps(every)
    assert canonical_bytes({"k": every}) == rfc8785.dumps({"k": every})
    escapes = canonical_bytes("\x00\x1f\x7f\b\f\n\r\t\u2028\u2029\"\\/")
    assert escapes == b'"\\u0000\\u001f\x7f\\b\\f\\n\\r\\t\xe2\x80\xa8\xe2\x80\xa9\\"\\\\/"'


TYPICAL = {"messages": [{"role": "user", "content": "42"}], "model": "gpt-4o-mini"}


@pytest.mark.parametrize("value", [
    TYPICAL,
    {**TYPICAL, "temperature": 0.7, "top_p": 0.95, "max_tokens": 256},
    {**TYPICAL, "temperature": 1.0, "seed": -0.0},  # integral floats: written as ints
    {"t": (1, "a", (None, True)), "u": [0.5, 2.0]},
    {"é": 1, "\ud7ff": 2, "e": 3, "\u00ff": [{"\u0100": None}]},  # non-ASCII keys below U+D800
    {"s": "\U0001f600 emoji and \ue000 in values"},
    [1, "x", {"a": [{}]}, []],
    "just a string", 7, 0.25, None, True,
])
def test_common_values_take_the_fast_path(value: object, monkeypatch: pytest.MonkeyPatch) -> None:
    assert took_fast_path(value, monkeypatch)
    assert encoded(value) == reference(value) == rfc8785.dumps(jsonable(value))


def test_an_action_with_pre_encoded_parts_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.core.canonical import Encoded

    spec = {"command": ["python3", "/app/run.py"], "runtime": {"cpu": 1, "memory": 1024.0, "gpu": None}}
    image, env = {"kind": "mock", "é": [1.5, None]}, {"class": "mock"}
    body: dict[str, Any] = {"v": 1, "salt": "", "spec": spec, "image": image, "env": env, "inputs": TYPICAL,
                            "seed": 3, "t": (0.5, 2.0), "n": None, "b": False}
    parts = {**body, "spec": Encoded.of(spec), "image": Encoded.of(image), "env": Encoded.of(env)}
    assert took_fast_path(parts, monkeypatch)
    assert canonical_bytes(parts) == reference(parts) == reference(body) == rfc8785.dumps(jsonable(body))


@pytest.mark.parametrize("value", [
    {"a": "part", "b": [1e-7]},  # a value the C encoder gets wrong
    {"a": "part", "b": {"\U0001f600": 1, "\ue000": 2}},
    {"a": "part", "\U0001f600": 1, "\ue000": 2},  # keys beside the part
    {"a": "part", "b": {"c": "part"}},  # a part below the top level
    {"a": "part", "b": ["part", "part"]},
    {"a": "part", "b": 2**53},  # errors: the reference encoder's
    {"a": "part", 1: 2},
    {"a": "part", "b": [{1: 2}]},
])
def test_objects_with_parts_and_values_the_fast_path_does_not_cover_take_the_reference_encoder(
        value: dict[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from theoryx.core.canonical import Encoded

    spliced = with_part_as(value, Encoded('{"p":[1,"\u00e9"]}'))
    assert not took_fast_path(spliced, monkeypatch)
    assert encoded(spliced) == reference(spliced) == reference(with_part_as(value, {"p": [1, "é"]}))


def with_part_as(value: object, part: object) -> object:
    """``value`` with each ``"part"`` replaced by ``part``."""
    if value == "part":
        return part
    if isinstance(value, dict):
        return {k: with_part_as(x, part) for k, x in value.items()}
    if isinstance(value, list):
        return [with_part_as(x, part) for x in value]
    return value


# Each value is one the C encoder alone gets wrong (different bytes, or bytes where an error is
# due): a fast path taken for it would fail the comparison with the reference.
@pytest.mark.parametrize("value", [
    1e-7, 1e-5, 9.999999999999999e-05, 1e16, 1e20, 1.5e20, 1.5e-9, 2.0**53, -(2.0**60),  # exponents
    {"x": [1e-7]},
    2**53, -(2**53), [2**64],  # integers outside ±(2**53-1)
    {1: "x"}, {True: "x"}, {None: "x"}, {"a": {2.5: "x"}},  # non-string keys, coerced by json.dumps
    {"\U0001f600": 1, "\ue000": 2}, {"\U00010000": 1, "\uffff": 2},  # code point order != UTF-16 order
    Shouting(5), [Shouting(5)], Keyed(a=1),  # subclasses: the reference encoder calls their methods
    {"\udc00": 1}, {"a": 1, "\ud800": 2},  # lone surrogates in keys
    math.nan, [math.inf],
])
def test_values_the_c_encoder_gets_wrong_take_the_reference_encoder(value: object,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        wrong: bytes | str = naive(value).encode("utf-8")
    except (ValueError, TypeError) as exc:  # UnicodeEncodeError is a ValueError
        wrong = f"{type(exc).__name__}: {exc}"
    expected = reference(value)
    assert wrong != expected, "the case must be one the C encoder alone gets wrong"
    assert encoded(value) == expected
    assert not took_fast_path(value, monkeypatch)


@pytest.mark.parametrize("value", [1.0, -0.0, 100.0, 2.0**53 - 1, (1, 2), {"t": (0.5,)}])
def test_values_rewritten_for_the_c_encoder_give_the_reference_bytes(value: object,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Integral floats (written as ints) and tuples (arrays for both encoders) stay fast."""
    assert took_fast_path(value, monkeypatch)
    assert encoded(value) == reference(value) == rfc8785.dumps(jsonable(value))


@pytest.mark.parametrize("value", ["\ud800", {"k": ["a\udfffb"]}, ["\udc00", 1]])
def test_a_lone_surrogate_in_a_string_fails_the_fast_path_as_the_reference(value: object,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Both encoders pass lone surrogates through; the UTF-8 encoding refuses them after either."""
    assert took_fast_path(value, monkeypatch)
    assert encoded(value) == reference(value) == "CanonicalizationError: strings must not contain lone surrogates"


def test_a_value_too_deep_for_the_walk_fails_as_the_reference_encoder_does() -> None:
    import sys

    deep: list[object] = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    with pytest.raises(RecursionError):
        canonical_bytes(deep)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(RecursionError):
        canonical_bytes(loop)
