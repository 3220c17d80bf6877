"""JSON numbers and booleans in requests: what JSON sends is what is taken, no lax conversions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bazaar.json_types import JsonBool, JsonFloat, JsonInt


class Body(BaseModel):
    count: JsonInt | None = None
    ratio: JsonFloat | None = None
    flag: JsonBool | None = None


@pytest.mark.parametrize(
    ("field", "sent", "taken"),
    [
        ("count", 3, 3),
        ("count", 3.0, 3),  # a whole JSON number is an integer (JSON Schema says so)
        ("count", -2, -2),
        ("ratio", 2, 2.0),
        ("ratio", 52.52, 52.52),
        ("flag", True, True),
        ("flag", False, False),
    ],
)
def test_json_values_are_taken(field: str, sent: Any, taken: Any) -> None:
    value = getattr(Body.model_validate({field: sent}), field)
    assert value == taken and type(value) is type(taken)


@pytest.mark.parametrize(
    ("field", "sent", "error"),
    [
        ("count", "2", "json_number_type"),
        ("count", True, "json_number_type"),
        ("count", 3.5, "int_from_float"),
        ("ratio", "2.5", "json_number_type"),
        ("ratio", False, "json_number_type"),
        ("flag", 0, "bool_type"),
        ("flag", 1, "bool_type"),
        ("flag", "yes", "bool_type"),
        ("flag", "true", "bool_type"),
    ],
)
def test_other_json_types_are_refused(field: str, sent: Any, error: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Body.model_validate({field: sent})
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [((field,), error)]


def test_the_schema_stays_plain_json_types() -> None:
    properties = Body.model_json_schema()["properties"]
    assert [p["anyOf"][0]["type"] for p in properties.values()] == ["integer", "number", "boolean"]
