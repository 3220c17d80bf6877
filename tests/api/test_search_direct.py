"""The search hot path (api/search_direct.py) reads plain parameters exactly as the route does, and leaves
everything else to the route (which validates and answers errors as documented). The responses of both paths
are compared on the real stack in tests/api/test_search.py."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from api.search_direct import parse
from bazaar.search.query import ListingQuery, SortOrder


def parsed(params: list[tuple[str, str]] | dict[str, str]) -> ListingQuery | None:
    return parse(urlencode(params).encode())


def test_plain_parameters_are_read_as_the_route_reads_them() -> None:
    query = parsed(
        [
            ("q", "  road bike 日本 "),
            ("category", "bikes"),
            ("category", "camping"),
            ("category", "bikes"),
            ("condition", "good"),
            ("min_price", "0"),
            ("max_price", "50000"),
            ("currency", "EUR"),
            ("seller_id", "0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10"),
            ("lat", "-52.52"),
            ("lng", "13.405"),
            ("radius_km", "25"),
            ("sort", "distance"),
            ("page", "3"),
            ("per_page", "50"),
            ("facets", "true"),
            ("utm_source", "ignored, as by the route"),
        ]
    )
    assert query == ListingQuery(
        q="road bike 日本",
        categories=["bikes", "camping"],
        conditions=["good"],
        min_price=0,
        max_price=50_000,
        currency="EUR",
        seller_id="0b9d1c0e-5a51-4f0e-8d8a-3c2f4a6b7e10",
        lat=-52.52,
        lng=13.405,
        radius_km=25.0,
        sort=SortOrder.DISTANCE,
        page=3,
        per_page=50,
        facets=True,
    )
    assert parse(b"") == ListingQuery()
    assert parse(b"q=caf%C3%A9+cr%C3%A8me") == ListingQuery(q="café crème")


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 201},
        {"q": "tab\there"},
        {"q": "bike \u202e reversed"},  # a bidi override: the shared text type refuses it (422 on the route)
        {"category": "sports\u2066"},
        {"q": "\u3000wide space"},  # stripped by the route's validator, which this path leaves to it
        {"category": ""},
        {"category": "x" * 65},
        {"condition": "mint"},
        {"min_price": "-1", "currency": "EUR"},
        {"min_price": "007", "currency": "EUR"},
        {"min_price": "1e3", "currency": "EUR"},
        {"min_price": "9223372036854775808", "currency": "EUR"},
        {"min_price": "10"},  # needs a currency
        {"min_price": "500", "max_price": "100", "currency": "EUR"},
        {"currency": "eur"},
        {"seller_id": "0B9D1C0E-5A51-4F0E-8D8A-3C2F4A6B7E10"},
        {"seller_id": "not-a-uuid"},
        {"lat": "52.5"},
        {"lat": "91", "lng": "0"},
        {"lat": "52.5", "lng": "13.4", "radius_km": "0"},
        {"lat": " 52.5", "lng": "13.4"},
        {"sort": "distance"},
        {"sort": "cheapest"},
        {"page": "0"},
        {"page": "101", "per_page": "100"},
        {"per_page": "101"},
        {"facets": "TRUE"},
    ],
)
def test_anything_not_plain_is_left_to_the_route(params: dict[str, str]) -> None:
    assert parsed(params) is None


def test_repeated_or_too_many_values_are_left_to_the_route() -> None:
    assert parsed([("q", "a"), ("q", "b")]) is None
    assert parsed([("page", "1"), ("page", "2")]) is None
    assert parsed([("category", f"c{n}") for n in range(11)]) is None
    assert parsed([("condition", "good")] * 6) is None
