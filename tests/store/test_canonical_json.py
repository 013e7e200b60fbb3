"""The fast canonical-JSON path is byte-identical to RFC 8785 (the rfc8785 package) wherever it applies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from materials_store.store import canonical_json

keys = st.text(alphabet=st.characters(codec="ascii"), max_size=8)
scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=6))
def test_fast_path_equals_rfc8785(payload: dict[str, object]) -> None:
    assert canonical_json(payload) == rfc8785.dumps(payload)


def test_floats_and_unicode_keys_take_the_exact_path() -> None:
    payload = {"金额": 1.5, "b": [1e21, 0.1], "a": "\u2028"}
    assert canonical_json(payload) == rfc8785.dumps(payload)


def test_dates_and_decimals_become_strings() -> None:
    assert (
        canonical_json({"d": dt.date(2026, 1, 2), "n": Decimal("12.30")}) == b'{"d":"2026-01-02","n":"12.30"}'
    )


def test_integers_beyond_the_json_safe_range_become_strings() -> None:
    assert canonical_json({"n": 2**60}) == b'{"n":"1152921504606846976"}'
