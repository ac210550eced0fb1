"""Parameter checking: the Rust checker's cases (crates/contract/src/schema.rs)."""

import pytest

from orbit_function import FieldError
from orbit_function.schema import ParameterSchema

SCHEMA = ParameterSchema(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "window": {"type": "integer", "minimum": 1, "default": 5, "x-orbit-maximum": "series_length"},
            "kind": {"enum": ["simple", "exponential", "weighted", "sma", "ema", "wma"], "default": "simple"},
            "alpha": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        },
        "dependentSchemas": {"alpha": {"properties": {"kind": {"enum": ["exponential", "ema"]}}}},
    }
)


def field(parameters, metadata=None, n=10):
    with pytest.raises(FieldError) as caught:
        SCHEMA.apply(parameters, metadata or {}, n)
    return caught.value.field


def test_defaults_fill_in_and_parameters_win_over_metadata():
    assert SCHEMA.apply({}, {"pattern": "x"}, 10) == {"window": 5, "kind": "simple"}
    assert SCHEMA.apply({}, {"window": 3}, 10)["window"] == 3
    assert SCHEMA.apply({"window": 2}, {"window": 3}, 10)["window"] == 2


def test_errors_name_the_field_and_where_it_came_from():
    assert field({"window": 0}) == "parameters.window"
    assert field({}, {"window": 11}) == "metadata.window"
    assert field({"window": "x"}) == "parameters.window"
    assert field({"window": 1.5}) == "parameters.window"
    assert field({"windw": 2}) == "parameters.windw"
    assert field({"kind": "median"}) == "parameters.kind"
    assert field({"kind": "ema", "alpha": 0}) == "parameters.alpha"
    with pytest.raises(FieldError) as caught:
        SCHEMA.apply({}, {}, 3)
    assert caught.value.field == "parameters.window"
    assert "defaults to 5" in caught.value.message


def test_integral_floats_become_integers():
    out = SCHEMA.apply({"window": 2.0}, {}, 10)
    assert out["window"] == 2 and isinstance(out["window"], int)
    assert SCHEMA.apply({"kind": "ema", "alpha": 0.5}, {}, 10)["alpha"] == 0.5


def test_messages_say_what_is_allowed():
    with pytest.raises(FieldError) as caught:
        SCHEMA.apply({"windw": 2}, {}, 10)
    assert "alpha, kind, window" in caught.value.message
    with pytest.raises(FieldError) as caught:
        SCHEMA.apply({"window": 11}, {}, 10)
    assert "only 10 values" in caught.value.message
    with pytest.raises(FieldError) as caught:
        SCHEMA.apply({"kind": "median"}, {}, 10)
    assert "simple, exponential" in caught.value.message


def test_a_repeated_check_gives_the_same_answer_and_a_fresh_copy():
    first = SCHEMA.apply({"window": 2}, {}, 10)
    first["window"] = 99
    assert SCHEMA.apply({"window": 2}, {}, 10)["window"] == 2
    assert field({"window": 0}) == field({"window": 0})


def test_broken_schemas_are_refused():
    for broken in (
        {"type": "array"},
        {"type": "object", "properties": {"w": {"x-orbit-maximum": "length"}}},
        {"type": "object", "properties": {"w": {"type": "integer", "minimum": 1, "default": 0}}},
    ):
        with pytest.raises(Exception):
            ParameterSchema(broken)
