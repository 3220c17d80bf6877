"""Search filters are built from typed parameters; user strings are always quoted and escaped."""

from __future__ import annotations

import pytest

from bazaar.search import ListingQuery, SortOrder, build_filter, build_sort, quote

HOSTILE = [
    'x" OR seller_id = "B',
    "\\",
    '\\"',
    "a AND b",
    "NOT active",
    "(bikes) OR (1 = 1)",
    "électronique - 日本語 🚲 \u2013",
    '"',
    "' OR ''='",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_quote_produces_one_string_literal(value: str) -> None:
    literal = quote(value)
    assert literal.startswith('"')
    assert literal.endswith('"')
    inner = literal[1:-1]
    # Every quote inside is escaped, and unescaping gives back exactly the user's value.
    unescaped, i = [], 0
    while i < len(inner):
        if inner[i] == "\\":
            assert inner[i + 1] in ('"', "\\")
            unescaped.append(inner[i + 1])
            i += 2
        else:
            assert inner[i] != '"', f"unescaped quote in {literal}"
            unescaped.append(inner[i])
            i += 1
    assert "".join(unescaped) == value


def test_filter_uses_fixed_attribute_names_and_typed_numbers() -> None:
    query = ListingQuery(
        categories=["bikes", 'x" OR 1=1'],
        min_price=100,
        max_price=900,
        currency="EUR",
        lat=52.5,
        lng=13.4,
        radius_km=2.5,
    )
    clauses = build_filter(query)
    assert clauses[0] == ['categories = "bikes"', 'categories = "x\\" OR 1=1"']
    assert 'currency = "EUR"' in clauses
    assert "price_amount >= 100" in clauses
    assert "price_amount <= 900" in clauses
    assert "_geoRadius(52.5, 13.4, 2500)" in clauses


def test_sorts() -> None:
    assert build_sort(ListingQuery(sort=SortOrder.RELEVANCE)) == []
    assert build_sort(ListingQuery(sort=SortOrder.PRICE_ASC)) == ["price_amount:asc"]
    assert build_sort(ListingQuery(sort=SortOrder.DISTANCE, lat=1.5, lng=2.0)) == ["_geoPoint(1.5, 2.0):asc"]
