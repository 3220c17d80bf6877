"""What the words of a search ask for, read the same way by both backends.

- A price phrase ("under 200", "below 500 euro", "over 50 €", "between 100 and 300") becomes price bounds in
  major units of each listing's own currency (and the currency, when it names one); its words leave the text.
- Meilisearch gets the rest as typed, except a leading "-": Meilisearch reads "-word" as "without word", but a
  buyer's "-10 C rated" is a temperature. Synonyms, stop words and typos are its index settings.
- The PostgreSQL fallback gets the rest as terms: each word (or a two-word synonym phrase) with its synonyms
  (bazaar/search/index.py, the same lists Meilisearch has), the categories it names, and, when no active
  listing has the word at all, trigram similarity (pg_trgm) to find what it is a typo of.

Every word that reaches a tsquery is a run of word characters, quoted: user input never carries tsquery syntax.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.listings.lifecycle import Taxonomy
from bazaar.models import Listing, ListingStatus
from bazaar.payments.money import Currency
from bazaar.search.index import CHEAP_WORDS, STOP_WORDS, TYPO_MIN_WORD_SIZE, synonyms

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 8

# ------------------------------------------------------------------------------------------ price words

_CURRENCY_WORDS = {
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "¥": "JPY",
    "yen": "JPY",
    # The other currencies listings may be priced in, by their codes (found from outside: "yen" and "jpy" were not
    # read as currencies).
    **{code.value.lower(): code.value for code in Currency},
}
_CUR = "(?:" + "|".join(re.escape(word) for word in sorted(_CURRENCY_WORDS, key=len, reverse=True)) + ")"
# 1500, 1,500, 1.500 (groups of three; a no-break space too), with cents after a last '.' or ',' of one or two digits.
# Up to 15 digits (a float holds them exactly; in minor units they stay within PostgreSQL's bigint). Found from
# outside: a bound of 10 digits or more was read as words, so "under 1000000000 euro" found nothing.
_NUM = r"\d{1,3}(?:[.,\u00a0\u202f]\d{3}){1,4}(?:[.,]\d{1,2})?(?!\d)|\d{1,15}(?:[.,]\d{1,2})?"
_UPPER = r"under|below|less\s+than|cheaper\s+than|max(?:imum)?|up\s+to|at\s+most|<=?"
_LOWER = r"over|above|more\s+than|from|min(?:imum)?|at\s+least|>=?"
# Not a price: "under 16 kg", "over 50 cm", "up to 8 GB".
_UNIT = r"(?!\s*(?:kg|g|cm|mm|m|l|ml|gb|tb|mb|inch|in|km|years?|months?|%|x)(?!\w))"
_BOUND = re.compile(
    rf"(?<!\w)(?P<kw>{_UPPER}|{_LOWER})\s*(?P<c1>{_CUR})?\s*(?P<n>{_NUM})(?!\w){_UNIT}\s*(?P<c2>{_CUR}(?!\w))?",
    re.IGNORECASE,
)
_BETWEEN = re.compile(
    rf"(?<!\w)between\s*(?P<c1>{_CUR})?\s*(?P<a>{_NUM})\s*(?:and|-)\s*(?P<c2>{_CUR})?\s*(?P<b>{_NUM})(?!\w)"
    rf"{_UNIT}\s*(?P<c3>{_CUR}(?!\w))?",
    re.IGNORECASE,
)


_CHEAP = frozenset(CHEAP_WORDS)


@dataclass(frozen=True)
class PriceWords:
    min_major: float | None = None
    max_major: float | None = None
    currency: str | None = None
    cheapest_first: bool = False  # "cheap", "budget": the lower price first among equally good matches


def _number(text: str) -> float:
    """'1,500' and '1.500' are 1500 (a separator before three digits groups them); '12,5' is 12.5."""
    whole, cents = text, ""
    if (last := max(text.rfind("."), text.rfind(","))) >= 0 and len(text) - last - 1 in (1, 2):
        whole, cents = text[:last], text[last + 1 :]
    digits = re.sub(r"\D", "", whole)
    return float(f"{digits}.{cents}" if cents else digits)


def _currency(*marks: str | None) -> str | None:
    return next((_CURRENCY_WORDS[m.lower()] for m in marks if m), None)


def price_words(q: str) -> tuple[str, PriceWords | None]:
    """'bike under 200 euro' -> ('bike', PriceWords(max_major=200.0, currency='EUR')). The first phrase of
    each kind counts; the text keeps everything else (a cheap word stays: it is a stop word anyway)."""
    cheap = not _CHEAP.isdisjoint(_WORD.findall(q.lower()))
    low: float | None = None
    high: float | None = None
    currency: str | None = None
    if match := _BETWEEN.search(q):
        low, high = sorted((_number(match["a"]), _number(match["b"])))
        currency = _currency(match["c1"], match["c2"], match["c3"])
        q = q[: match.start()] + " " + q[match.end() :]
    while match := _BOUND.search(q):
        upper = re.fullmatch(_UPPER, match["kw"].lower()) is not None
        if upper and high is None:
            high = _number(match["n"])
        elif not upper and low is None:
            low = _number(match["n"])
        currency = currency or _currency(match["c1"], match["c2"])
        q = q[: match.start()] + " " + q[match.end() :]
    if low is None and high is None and not cheap:
        return q, None
    return " ".join(q.split()), PriceWords(low, high, currency, cheap)


def minor_bounds(price: PriceWords, exponent: int) -> tuple[int | None, int | None]:
    """The bounds in minor units of a currency with `exponent` decimals (inclusive, rounded inwards; in
    decimal, so 0.29 is 29 cents, not 28.999...)."""

    def minor(major: float, rounding: str) -> int:
        return int(Decimal(repr(major)).scaleb(exponent).to_integral_value(rounding))

    low = minor(price.min_major, ROUND_CEILING) if price.min_major is not None else None
    high = minor(price.max_major, ROUND_FLOOR) if price.max_major is not None else None
    return low, high


# ---------------------------------------------------------------------------------------- Meilisearch

_NEGATION = re.compile(r"(?<!\S)-+(?=\S)")


def meili_text(q: str) -> str:
    """The text for Meilisearch: no "-word" exclusions (see the module docstring)."""
    return _NEGATION.sub("", q)


# ------------------------------------------------------------------------------------------ PostgreSQL


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(text.lower()))


@cache
def _synonyms() -> dict[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The synonyms of index.py, tokenized the way the fallback reads a query ("e-bike" -> ("e", "bike"))."""
    return {_words(k): tuple(_words(v) for v in vs) for k, vs in synonyms().items()}


@cache
def _stop_words() -> frozenset[str]:
    return frozenset(STOP_WORDS)


def _phrase(words: tuple[str, ...], prefix: bool) -> str:
    """Words in a row; with `prefix`, the last one also as the start of a longer word ("iph" finds
    "iphone"): Meilisearch does that for the last word of a query only, and so does the fallback, from
    three letters on ("pi" would find the "pick-up" of every description)."""
    *head, last = (f"'{w}'" for w in words)
    return " <-> ".join([*head, last + (":*" if prefix and len(words[-1]) >= 3 else "")])


@dataclass(frozen=True)
class Term:
    text: str  # what the buyer typed: one word, or a two-word synonym phrase
    tsquery: str  # to_tsquery('simple', ...) text: the word (a prefix) or any of its synonyms
    categories: tuple[str, ...]  # the category slugs it names, with every category below them
    typo_candidate: bool  # one word of TYPO_MIN_WORD_SIZE letters or more: may be a typo if no listing has it


def _names_category(word: str, name_word: str) -> bool:
    """'bike' names 'Bikes', 'camera' names 'Cameras', 'sports' names 'Sports & Outdoors'."""
    if word == name_word:
        return True
    if len(word) >= 3 and name_word.startswith(word) and len(name_word) - len(word) <= 2:
        return True
    return len(name_word) >= 3 and word.startswith(name_word) and len(word) - len(name_word) <= 1


def categories_named(words: list[tuple[str, ...]], tree: Taxonomy) -> tuple[str, ...]:
    """The categories a word (or one of its synonyms) names, the most specific ones only ("books" names
    Books, not Books & Media), with everything below them."""
    named = {
        slug
        for slug, name in tree.names.items()
        for name_word in {*_words(name), *_words(slug)}
        if any(len(w) == 1 and _names_category(w[0], name_word) for w in words)
    }
    specific = [s for s in named if not any(o != s and s in dict(tree.path(o)) for o in named)]
    return tuple(sorted({d for s in specific for d in tree.descendants(s)}))


def terms(q: str, tree: Taxonomy) -> list[Term]:
    """The fallback's reading of `q` (after interpret): its words but the stop words, a two-word synonym
    phrase as one term, at most MAX_TERMS."""
    words = [w for w in _WORD.findall(q.lower()) if w not in _stop_words()]
    found: list[Term] = []
    i = 0
    while i < len(words) and len(found) < MAX_TERMS:
        pair = tuple(words[i : i + 2])
        key = pair if len(pair) == 2 and pair in _synonyms() else (words[i],)
        i += len(key)
        alternatives = [key, *_synonyms().get(key, ())]
        last = i >= len(words)
        found.append(
            Term(
                text=" ".join(key),
                tsquery=" | ".join(dict.fromkeys(f"({_phrase(a, last)})" for a in alternatives)),
                categories=categories_named(alternatives, tree),
                typo_candidate=len(key) == 1
                and len(key[0]) >= TYPO_MIN_WORD_SIZE["oneTypo"]
                and not key[0].isdigit(),
            )
        )
    return found


# ------------------------------------------------------------------------------- the fallback's SQL

_L = Listing.__table__.c
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
# What a typo is looked for in: the title (trigram index ix_listings_title_trgm, migration 0010). Titles are
# short, so similarity is cheap to compute for every candidate; descriptions would cost ~8x per row.
_TYPO_TEXT: ColumnElement[str] = _L.title
# word_similarity() a typo needs to count as the word (pg_trgm's default is 0.6; used only for words no active
# listing has): "stratocastr" has 0.91 with "Stratocaster", "macbok" 0.71 with "MacBook", "carbn" 0.67 with
# "Carbon", but a swap costs more: "iphnoe" has 0.43 with "iPhone". At 0.4, "macbok" also matched 2,500
# other titles of 100,000 and "gear" 1,363; at 0.5 none of those, and the same true matches but iphnoe's.
TYPO_SIMILARITY = 0.5


@dataclass
class TextMatch:
    condition: ColumnElement[bool]  # the first term matches (on the listing's columns: indexes serve it)
    every: ColumnElement[bool]  # every term matches (a chosen sort's matches: Meilisearch's strategy "all")
    scores: Any  # LATERAL subquery of per-listing scores; the page query joins it to sort by `order`
    order: list[ColumnElement[Any]]  # best first, over `scores`
    words: int  # how many of `order`'s keys are the `words` rule (the terms matched); the rest follow it
    tsquery: ColumnElement[Any]  # any term, for ts_headline


def _count(flags: list[Any]) -> ColumnElement[int]:
    return functools.reduce(operator.add, [case((f, 1), else_=0) for f in flags])


async def _typos(session: AsyncSession, found: list[Term], tsqueries: list[Any]) -> set[int]:
    """The terms that may be typos and that no active listing has (one statement). A plain EXISTS gets a
    fast-start plan that bets on an early hit (a scan of the table, or of the status index): a word nobody has
    means reading every row, 170 ms at 100,000 listings. A MATERIALIZED CTE is planned on its own, through
    the GIN index: 0.1 ms for a word nobody has, 3 ms for one that 5,000 listings have."""
    candidates = [n for n, t in enumerate(found) if t.typo_candidate and not t.categories]
    if not candidates:
        return set()
    exists = []
    for n in candidates:
        having = (
            select(literal(1))
            .where(_L.status == ListingStatus.ACTIVE, _L.search_vector.op("@@")(tsqueries[n]))
            .cte(f"having_{n}")
            .prefix_with("MATERIALIZED")
        )
        exists.append(select(literal(1)).select_from(having).exists())
    present = (await session.execute(select(*exists))).one()
    return {n for n, there in zip(candidates, present, strict=True) if not there}


async def text_match(session: AsyncSession, found: list[Term]) -> TextMatch | None:
    """How listings match the terms, and how they rank, like Meilisearch's rules: more terms matched first
    (`words`), then the leading terms (its matching strategy drops words from the end), then exact matches
    before typos (`typo`), then a word naming the listing's own category (`attribute`: the category
    name is its first searchable attribute), then the text rank (title over city over description)."""
    if not found:
        return None
    tsqueries = [func.to_tsquery(_SIMPLE, t.tsquery) for t in found]
    typos = await _typos(session, found, tsqueries)
    if typos:
        await session.execute(text(f"SET LOCAL pg_trgm.word_similarity_threshold = {float(TYPO_SIMILARITY)}"))
    # Each score once per listing, in a LATERAL subquery (OFFSET 0 keeps PostgreSQL from inlining it, which
    # would evaluate a term's match again for every sort key that mentions it).
    columns: list[Any] = []
    for n, (term, tsq) in enumerate(zip(found, tsqueries, strict=True)):
        exact: ColumnElement[bool] = _L.search_vector.op("@@")(tsq)
        if term.categories:
            columns.append(_L.category_slug.in_(term.categories).label(f"named_{n}"))
            exact = or_(exact, columns[-1].element)
        if n in typos:
            columns.append(exact.label(f"exact_{n}"))
            columns.append(or_(exact, literal(term.text).op("<%")(_TYPO_TEXT)).label(f"matched_{n}"))
        else:
            columns.append(exact.label(f"matched_{n}"))
    every = func.to_tsquery(_SIMPLE, " | ".join(f"({t.tsquery})" for t in found))
    rank: ColumnElement[Any] = func.ts_rank_cd(_L.search_vector, every)
    for n in sorted(typos):
        rank = rank + func.word_similarity(found[n].text, _TYPO_TEXT)
    scores = select(*columns, rank.label("rank")).correlate(Listing.__table__).offset(0).lateral("scores")
    matched = [scores.c[f"matched_{n}"] for n in range(len(found))]
    order: list[ColumnElement[Any]] = [_count(matched).desc()]
    if len(found) > 1:
        leading = case(*[(and_(*matched[:k]), k) for k in range(len(found), 0, -1)], else_=0)
        order.append(leading.desc())
    words = len(order)
    if typos:
        exact_or_typo = [scores.c[f"exact_{n}"] if n in typos else matched[n] for n in range(len(found))]
        order.append(_count(exact_or_typo).desc())
    if named := [scores.c[c.name] for c in columns if c.name.startswith("named_")]:
        order.append(_count(named).desc())
    # Listings match when the first term does, as with Meilisearch's matching strategy (`last`: it drops
    # words from the end until something matches). "Any term" would rank the same, but a common last word
    # ("set" in "harry potter box set": 43,600 of 100,000 listings) would make every query rank half the table.
    first = next(c.element for c in columns if c.name == "matched_0")
    each = and_(*[c.element for c in columns if c.name.startswith("matched_")])
    return TextMatch(first, each, scores, [*order, scores.c.rank.desc()], words, every)
