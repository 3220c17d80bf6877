"""The shared text types: no control characters (Unicode Cc), nor bidirectional overrides and isolates, in
anything people send us."""

from __future__ import annotations

import sys
import unicodedata
from typing import Annotated, Any

import jsonschema_rs
import pytest
from pydantic import BaseModel, HttpUrl, TypeAdapter, ValidationError

from bazaar.text import (
    SINGLE_LINE_PATTERN,
    MultiLine,
    SingleLine,
    control_character_problem,
    multi_line,
    refuse_control_characters,
    single_line,
)

CC = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"]
# LRE, RLE, PDF, LRO, RLO and LRI, RLI, FSI, PDI: format characters (Cf) that reorder how text displays.
BIDI_CONTROLS = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def test_the_forbidden_set_is_exactly_unicode_category_cc_and_the_bidi_controls() -> None:
    assert len(CC) == 65  # C0, DEL, C1
    assert len(BIDI_CONTROLS) == 9 and {unicodedata.category(c) for c in BIDI_CONTROLS} == {"Cf"}
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        forbidden = unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS
        line_break = char in "\u2028\u2029"  # the line and paragraph separators: no single line has them
        assert (control_character_problem(f"a{char}b", multiline=False) is not None) == (
            forbidden or line_break
        ), hex(code)
        allowed_in_text = char in "\t\n"
        assert (control_character_problem(f"a{char}b", multiline=True) is not None) == (
            forbidden and not allowed_in_text
        ), hex(code)


@pytest.mark.parametrize(
    ("value", "single", "multi"),
    [
        ("plain text, ünïcödé, 日本語 🚲", True, True),
        ("\u200b\u200e zero-width space and a direction mark are format (Cf), and harmless", True, True),
        ("\u202e reversed: a bidi override", False, False),
        ("isolate \u2067 right-to-left", False, False),
        ("שלום, مرحبا: right-to-left text needs no control", True, True),
        ("line\nbreak", False, True),
        ("windows\r\nbreak", False, True),
        ("tab\there", False, True),
        ("lone\rCR", False, False),
        ("CR at the end\r", False, False),
        ("NUL\x00", False, False),
        ("\x1b[31mred", False, False),
        ("DEL\x7f", False, False),
        ("C1 NEL\x85", False, False),
        ("C1\x9f", False, False),
        ("\x0b vertical tab", False, False),
        ("\x0c form feed", False, False),
    ],
)
def test_single_and_multi_line(value: str, single: bool, multi: bool) -> None:
    assert (control_character_problem(value, multiline=False) is None) == single
    assert (control_character_problem(value, multiline=True) is None) == multi


def test_the_problem_names_the_character_and_where() -> None:
    problem = control_character_problem("ab\x00c", multiline=False)
    assert problem is not None
    assert "control characters are not allowed" in problem and "U+0000 at index 2" in problem
    multi = control_character_problem("x\n\x07", multiline=True)
    assert multi is not None and "U+0007 at index 2" in multi and "not allowed" in multi
    bidi = control_character_problem("invoice\u202efdp.exe", multiline=True)
    assert bidi == "bidirectional control characters are not allowed; found U+202E at index 7"


class Form(BaseModel):
    title: Annotated[str, single_line(min_length=3, max_length=10)]
    body: Annotated[str, multi_line(max_length=30)] = ""
    secret: Annotated[str, single_line(max_length=10, strip=False)] = ""
    code: Annotated[str, single_line(2, 2, pattern="^[A-Z]{2}$", strip=False)] = "DE"
    tags: dict[Annotated[str, single_line(1, 5)], Annotated[str, single_line(max_length=5)]] = {}
    url: Annotated[HttpUrl, refuse_control_characters()] | None = None


def errors(**fields: object) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Form.model_validate({"title": "Title", **fields})
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_pydantic_types_refuse_control_characters_with_their_own_error() -> None:
    assert errors(title="Bike\r\nBcc: x") == [(("title",), "control_character")]
    assert errors(body="ok\x00") == [(("body",), "control_character")]
    assert errors(secret="pass\tword") == [(("secret",), "control_character")]
    assert errors(code="D\x00") == [(("code",), "control_character")]
    assert errors(tags={"k\x00": "v"}) == [(("tags", "k\x00", "[key]"), "control_character")]
    assert errors(tags={"k": "v\n"}) == [(("tags", "k"), "control_character")]
    # URL parsing would drop the tab silently (WHATWG): the check sees the raw string first.
    assert errors(url="https://exa\tmple.com/") == [(("url",), "control_character")]
    with pytest.raises(ValidationError) as caught:
        Form.model_validate({"title": "a\x00b"})
    assert "control characters are not allowed" in str(caught.value)


def test_lengths_patterns_and_stripping_still_apply() -> None:
    form = Form.model_validate(
        {
            "title": "  Bike  ",
            "body": "line one\r\nline two\n\tend\n",
            "secret": " s p ",
            "tags": {" a ": " b "},
        }
    )
    assert form.title == "Bike"  # stripped, then measured
    assert form.body == "line one\r\nline two\n\tend"  # inner line breaks and tabs kept
    assert form.secret == " s p "  # strip=False keeps it exact
    assert form.tags == {"a": "b"}
    assert errors(title="  a  ") == [(("title",), "string_too_short")]
    # Whitespace alone is said to be blank (found from outside: "   " was told it needs at least 3 characters).
    assert errors(title="   ") == [(("title",), "blank")]
    assert errors(title="\u3000\u00a0 ") == [(("title",), "blank")]
    assert errors(title="x" * 11) == [(("title",), "string_too_long")]
    assert errors(body="x" * 31) == [(("body",), "string_too_long")]
    assert errors(code="de") == [(("code",), "string_pattern_mismatch")]
    assert errors(title=5) == [(("title",), "string_type")]
    # A leading control character that str.strip() would eat (U+001F is whitespace to Python) is refused,
    # not silently dropped.
    assert errors(title="\x1fBike") == [(("title",), "control_character")]


def test_aliases_and_json_schema() -> None:
    assert TypeAdapter(SingleLine).validate_python(" x ") == "x"
    assert TypeAdapter(MultiLine).validate_python("a\nb") == "a\nb"
    with pytest.raises(ValidationError):
        TypeAdapter(SingleLine).validate_python("a\nb")
    schema = Form.model_json_schema()["properties"]
    assert schema["title"] == {
        "maxLength": 10,
        "minLength": 3,
        "pattern": schema["title"]["pattern"],
        "title": "Title",
        "type": "string",
    }
    # The plain rule, with the length counted after stripping (test_the_pattern_says_the_length_counts_...).
    assert schema["title"]["pattern"] != SINGLE_LINE_PATTERN


def test_the_json_schema_states_the_rule_as_an_ecma_pattern_that_agrees_with_the_check() -> None:
    """Clients validate by the document (ECMA-262 regexes, as jsonschema_rs runs them): every character the
    check refuses, anywhere in a value, fails the pattern, and everything else passes it."""

    class Texts(BaseModel):
        line: SingleLine
        text: MultiLine
        slug: Annotated[str, single_line(pattern="^[a-z]+$")]

    properties = Texts.model_json_schema()["properties"]
    assert properties["slug"]["pattern"] == "^[a-z]+$"  # a field's own pattern stands
    for name, multiline in (("line", False), ("text", True)):
        document = jsonschema_rs.validator_for({"type": "string", "pattern": properties[name]["pattern"]})
        samples = [chr(c) for c in [*range(0x00, 0xA1), *range(0x2028, 0x2070), 0xE9, 0x1F600]]
        values = [f"a{c}b" for c in samples] + [f"a{c}" for c in samples] + [f"{c}b" for c in samples]
        values += ["", "a\r\n", "a\r", "\r\nb", "a\n", "x\r\ny\n\tz"]
        for value in values:
            assert document.is_valid(value) == (control_character_problem(value, multiline) is None), (
                name,
                value,
            )


@pytest.mark.parametrize(
    ("kind", "min_length"),
    [
        (single_line, 1),
        (single_line, 2),
        (single_line, 3),
        (single_line, 10),
        (multi_line, 1),
        (multi_line, 3),
    ],
)
def test_the_pattern_says_the_length_counts_after_stripping(kind: Any, min_length: int) -> None:
    """A stripped field's minimum holds for the stripped value: the document's pattern refuses what only its
    ends' whitespace made long enough, and agrees with the validator value by value (control characters too)."""
    text = TypeAdapter(Annotated[str, kind(min_length=min_length, max_length=50)])
    schema = text.json_schema()
    assert "(?=" not in schema["pattern"]  # no lookahead: generators build from it instead of filtering
    document = jsonschema_rs.validator_for(schema)
    spaces = [" ", "\t", "\u00a0", "\u2003", "\u3000", "\u2028", "\n", "\r\n", "\r", "\x00"]
    inner = [
        "",
        "a",
        "ab",
        "abc",
        "a b",
        "a  b",
        "a\u3000b",
        "a\r\nb",
        "a\nb",
        "\ufeff",
        "\u200bab",
        "a\u200b",
        "\u200b\u3164\u2060",
        "\u200bx\u200b",
        "x" * 10,
    ]
    values = [f"{s}{v}{e}" for s in ["", *spaces] for v in inner for e in ["", *spaces]]
    for value in values:
        try:
            text.validate_python(value)
            accepted = True
        except ValidationError:
            accepted = False
        # Invisible characters alone (a BOM, a zero-width space, a filler) are blank to both (found from outside:
        # the pattern let them by).
        assert document.is_valid(value) == accepted, (value, schema["pattern"])
    assert not document.is_valid(" " * 10) and document.is_valid(" " + "x" * min_length + " ")


def test_an_unstripped_field_keeps_the_plain_rule() -> None:
    schema = TypeAdapter(Annotated[str, single_line(min_length=10, strip=False)]).json_schema()
    assert schema["pattern"] == SINGLE_LINE_PATTERN and schema["minLength"] == 10


def test_a_multi_line_minimum_the_pattern_cannot_state_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ValueError, match="cannot be stated"):
        TypeAdapter(Annotated[str, multi_line(min_length=4)])


@pytest.mark.parametrize(
    "value",
    [
        "\u200b\u200b\u200b",  # zero-width spaces
        "\u0301\u0301\u0301",  # combining marks with nothing to combine
        "\u2800\u2800\u2800",  # braille blanks
        "\u3164\u3164\u3164",  # Hangul fillers
        "\ufeff\u2060\u200d",  # BOM, word joiner, zero-width joiner
        "\U000e0041\U000e0042\U000e0043",  # tag characters
        " \u200b \u00a0 ",
    ],
)
def test_text_that_shows_nothing_is_blank(value: str) -> None:
    """Found from outside: titles of invisible characters alone were stored, published and indexed."""
    assert errors(title=value) == [(("title",), "blank")]
    assert Form.model_validate({"title": f"e\u0301{value}"}).title  # a letter among them is text


def test_a_single_line_refuses_the_unicode_line_separators() -> None:
    """Found from outside: "a\u2028b" was a title, though a title is a single line."""
    problem = control_character_problem("a\u2028b", multiline=False)
    assert problem == "line breaks are not allowed (a single line); found U+2028 at index 1"
    assert control_character_problem("a\u2029b", multiline=True) is None
