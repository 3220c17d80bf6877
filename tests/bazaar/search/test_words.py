"""What the words of a search ask for (bazaar/search/words.py): price phrases, Meilisearch's "-" operator, and
the fallback's terms (synonyms, categories, stop words), whose tsquery text never carries user syntax."""

from __future__ import annotations

import re

import pytest

from bazaar.listings.lifecycle import Taxonomy
from bazaar.search.index import INDEX_SETTINGS, STOP_WORDS, SYNONYM_GROUPS, synonyms
from bazaar.search.query import ListingQuery, build_filter, build_request, interpret
from bazaar.search.words import PriceWords, meili_text, minor_bounds, price_words, terms

TREE = Taxonomy(
    parents={
        "sports": None,
        "bikes": "sports",
        "books-media": None,
        "books": "books-media",
        "games": "books-media",
        "electronics": None,
        "phones": "electronics",
        "cameras": "electronics",
    },
    names={
        "sports": "Sports & Outdoors",
        "bikes": "Bikes",
        "books-media": "Books & Media",
        "books": "Books",
        "games": "Games",
        "electronics": "Electronics",
        "phones": "Phones",
        "cameras": "Cameras",
    },
)
HOSTILE = [
    "'",
    "a' | 'b",
    "x:* & !y",
    "(bike) <-> (car)",
    "\\'",
    "électronique - 日本語 🚲",
    "-10 C",
    "!!! ||| &&&",
    "x" * 150,
]


@pytest.mark.parametrize(
    ("q", "rest", "price"),
    [
        ("bike under 200", "bike", PriceWords(max_major=200.0)),
        ("laptop under 500 euro", "laptop", PriceWords(max_major=500.0, currency="EUR")),
        ("headphones under 100 €", "headphones", PriceWords(max_major=100.0, currency="EUR")),
        ("camera below $1,5", "camera", PriceWords(max_major=1.5, currency="USD")),
        ("sofa over 50 and under 300 eur", "sofa and", PriceWords(50.0, 300.0, "EUR")),
        ("tent between 20 and 80", "tent", PriceWords(20.0, 80.0)),
        ("cheap iphone", "cheap iphone", PriceWords(cheapest_first=True)),
        # Found from outside: a thousands separator read "under 1,000" as under 1.
        ("bike under 1,000", "bike", PriceWords(max_major=1000.0)),
        ("sofa under 1.500 eur", "sofa", PriceWords(max_major=1500.0, currency="EUR")),
        ("tv under 1\u00a0200 €", "tv", PriceWords(max_major=1200.0, currency="EUR")),
        ("car under 1.000.000", "car", PriceWords(max_major=1_000_000.0)),
        ("lens between 1,000.50 and 2.000,75", "lens", PriceWords(1000.5, 2000.75)),
        # Found from outside: yen and the other currencies' codes were words to find.
        ("camera under 50000 yen", "camera", PriceWords(max_major=50000.0, currency="JPY")),
        ("camera under ¥50000", "camera", PriceWords(max_major=50000.0, currency="JPY")),
        ("watch over 200 chf", "watch", PriceWords(min_major=200.0, currency="CHF")),
        ("boots under 900 SEK", "boots", PriceWords(max_major=900.0, currency="SEK")),
        ("kayak under 300 dollars", "kayak", PriceWords(max_major=300.0, currency="USD")),
        # Found from outside: from 10 digits on, a bound was words to find (and nothing matched).
        ("under 1000000000 euro", "", PriceWords(max_major=1e9, currency="EUR")),
        ("under 999999999999999 yen", "", PriceWords(max_major=999999999999999.0, currency="JPY")),
        ("over 1,000,000,000,000", "", PriceWords(min_major=1e12)),
    ],
)
def test_price_phrases_become_bounds(q: str, rest: str, price: PriceWords) -> None:
    assert price_words(q) == (rest, price)


@pytest.mark.parametrize(
    "q", ["kettlebell under 16 kg", "iphone 13", "up to 8 GB ram", "kids bicycle 20 inch", ""]
)
def test_other_numbers_are_not_prices(q: str) -> None:
    assert price_words(q) == (q, None)


def test_bounds_in_minor_units_round_inwards() -> None:
    assert minor_bounds(PriceWords(1.005, 2.999), 2) == (101, 299)
    assert minor_bounds(PriceWords(None, 200.0), 0) == (None, 200)
    assert minor_bounds(PriceWords(0.29, 0.29), 2) == (29, 29)  # not 28.999... cents


def test_price_words_filter_both_backends_unless_the_request_has_bounds() -> None:
    words = interpret(ListingQuery(q="bike under 200 euro"))
    assert (words.q, words.max_major, words.currency) == ("bike", 200.0, "EUR")
    body = build_request(ListingQuery(q="bike under 200"))
    assert body["q"] == "bike"
    [clause] = body["filter"]
    assert isinstance(clause, str)
    assert '(currency IN ["EUR", ' in clause and "price_amount <= 20000)" in clause
    assert '(currency IN ["JPY"] AND price_amount <= 200)' in clause  # no decimals: major = minor
    own = interpret(ListingQuery(q="bike under 200", max_price=5_000, currency="EUR"))
    assert (own.q, own.max_major, own.max_price) == ("bike", None, 5_000)
    assert build_request(ListingQuery(q="cheap bike"))["sort"] == ["currency:asc", "price_amount:asc"]
    assert build_request(ListingQuery(q="cheap bike under 500 euro"))["sort"] == ["price_amount:asc"]
    assert build_filter(ListingQuery(q="bike under 200")) == []  # interpret is build_request's job


def test_meilisearch_gets_no_exclusions() -> None:
    assert meili_text("down sleeping bag, -10 C rated") == "down sleeping bag, 10 C rated"
    assert meili_text("e-bike --x") == "e-bike x"


def test_synonyms_go_both_ways_and_match_the_index_settings() -> None:
    found = synonyms()
    for group in SYNONYM_GROUPS:
        for word in group:
            assert set(found[word]) >= set(group) - {word}
    assert INDEX_SETTINGS["synonyms"] == found
    assert INDEX_SETTINGS["stopWords"] == STOP_WORDS


def test_terms_expand_synonyms_phrases_and_categories() -> None:
    bike, berlin = terms("the bike in Berlin", TREE)  # stop words dropped
    # only the last word is also a prefix; a synonym in both its forms
    assert bike.tsquery == "('bike') | ('bicycle') | ('bicycles') | ('bikes')"
    assert terms("bike", TREE)[0].tsquery == "('bike':*) | ('bicycle':*) | ('bicycles':*) | ('bikes':*)"
    assert terms("raspberry pi", TREE)[1].tsquery == "('pi')"  # not "pick-up"
    assert bike.categories == ("bikes",)
    assert (berlin.text, berlin.categories, berlin.typo_candidate) == ("berlin", (), True)
    [coffee] = terms("coffee machine", TREE)
    assert coffee.text == "coffee machine"
    assert "('espresso' <-> 'machine':*)" in coffee.tsquery
    [books] = terms("books", TREE)
    assert books.categories == ("books",)  # the most specific category, not Books & Media
    [electronics] = terms("electronics", TREE)
    assert electronics.categories == ("cameras", "electronics", "phones")
    [camera] = terms("camera", TREE)
    assert camera.categories == ("cameras",)
    assert [t.typo_candidate for t in terms("r6 3310 iphone", TREE)] == [False, False, True]


@pytest.mark.parametrize("value", HOSTILE)
def test_fallback_terms_carry_only_quoted_words(value: str) -> None:
    for term in terms(value, TREE):
        for alternative in term.tsquery.split(" | "):
            assert re.fullmatch(r"\('\w+'(?::\*)?(?: <-> '\w+'(?::\*)?)*\)", alternative), alternative
    assert len(terms(value, TREE)) <= 8
