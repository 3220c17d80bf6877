"""The OpenAPI document as api/openapi.py builds it, checked in process: its schemas speak JSON Schema, so
validators and client generators read every bound the API enforces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from api.app import app

# Pydantic's names for bounds: a constraint pydantic cannot express on a schema lands in it under these, which
# no JSON Schema validator or client generator reads (the bound silently vanishes from the contract).
PYDANTIC_ONLY_KEYWORDS = frozenset({"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of"})


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("properties", "example", "examples", "default"):
                yield from _schema_nodes(value)
            elif key == "properties":
                for prop in value.values():
                    yield from _schema_nodes(prop)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_nodes(item)


def test_every_bound_is_in_json_schema_keywords() -> None:
    schemas = app.openapi()["components"]["schemas"]
    misnamed = [
        (name, sorted(PYDANTIC_ONLY_KEYWORDS & node.keys()))
        for name, schema in schemas.items()
        for node in _schema_nodes(schema)
        if PYDANTIC_ONLY_KEYWORDS & node.keys()
    ]
    assert not misnamed, misnamed
    # A length bound on an array or object is maxItems/maxProperties: maxLength there bounds nothing.
    lengths_on_collections = [
        name
        for name, schema in schemas.items()
        for node in _schema_nodes(schema)
        if node.get("type") in ("array", "object") and {"minLength", "maxLength"} & node.keys()
    ]
    assert not lengths_on_collections, lengths_on_collections
    bounded = schemas["ListingPatch"]["properties"]["quantity"]
    assert (bounded["minimum"], bounded["maximum"]) == (0, 10_000), bounded
