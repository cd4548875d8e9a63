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
