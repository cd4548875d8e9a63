"""The hit-path RFC 8785 encoder agrees byte for byte with the ``rfc8785`` package."""

from __future__ import annotations

import math

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
