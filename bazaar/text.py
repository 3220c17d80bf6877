"""Text from people: every string the API accepts is free of control characters (Unicode category Cc) and of the
bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069, category Cf).

Control characters are never content: a NUL cannot be stored in PostgreSQL text, a CR/LF in a listing title
ends up in email Subject headers, and the rest confuse terminals, logs and search. Two shapes:

- single line (names, titles, identifiers, short labels): no Cc at all, so no CR, LF or TAB either, nor the
  Unicode line and paragraph separators (U+2028, U+2029);
- multi line (descriptions, messages, review text, notes): `\\n`, `\\r\\n` and `\\t` stay, the rest is refused.

The bidirectional overrides and isolates make text display in another order than it is stored (a title or a
message that reads one way and says another: the "Trojan Source" and file-name spoofing trick); right-to-left
text needs none of them, so they are refused in both shapes.

A required text (stripped, with a minimum length) that shows nothing, whitespace or invisible characters alone
(zero-width spaces, joiners, combining marks with nothing to combine, blank letters), is refused as blank.

At the HTTP edge use the pydantic metadata, e.g. `Annotated[str, single_line(min_length=3, max_length=140)]`
(an invalid value is a 422 naming the field). Inside a Temporal workflow, where no pydantic model validates,
call `control_character_problem` (pure and deterministic).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import annotated_types
from pydantic import BeforeValidator, GetJsonSchemaHandler, StringConstraints
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

# Category Cc is exactly C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F); fixed since Unicode 1.1,
# so a character class is the same test as unicodedata.category() == "Cc", and faster on long text.
# A single line also refuses the Unicode line and paragraph separators (U+2028, U+2029): they break a line too.
SINGLE_LINE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Multi line keeps TAB, LF and CR only as part of CRLF (a lone CR is an old Mac line break or an injection).
_MULTI_LINE_FORBIDDEN = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)"
)
_BIDI_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# The same rules for the OpenAPI document (ECMA-262 regexes), so clients and generated validators know them.
_SINGLE_LINE_REFUSED = r"\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_MULTI_LINE_REFUSED = r"\u0000-\u0008\u000b\u000c\u000d\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
# What pydantic's `strip_whitespace` removes from the ends: Unicode White_Space (Rust's `str::trim`).
_WHITE_SPACE = r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# One character of each shape (CRLF counts as one), and one that stripping keeps.
_SINGLE_LINE_CHAR, _SINGLE_LINE_KEPT = (
    rf"[^{_SINGLE_LINE_REFUSED}]",
    rf"[^{_SINGLE_LINE_REFUSED}{_WHITE_SPACE}]",
)
_MULTI_LINE_CHAR, _MULTI_LINE_KEPT = (
    rf"(?:[^{_MULTI_LINE_REFUSED}]|\r\n)",
    rf"[^{_MULTI_LINE_REFUSED}{_WHITE_SPACE}]",
)
# Kept characters that show nothing (format characters, fillers: see `_shows_something`), as far as a compact
# class can list them: a combining mark or a tag character alone is blank to the check but not to the pattern.
_SHOWS_NOTHING = (
    r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2060-\u206f\u2800\u3164"
    r"\ufe00-\ufe0f\ufeff\uffa0"
)
SINGLE_LINE_PATTERN = rf"^{_SINGLE_LINE_CHAR}*$"
MULTI_LINE_PATTERN = rf"^{_MULTI_LINE_CHAR}*$"


def _stripped_length_at_least(multiline: bool, n: int) -> str:
    """The shape's pattern for a value at least `n` long once its ends are stripped, showing something: a
    visible character; or two kept ones (one of them visible, or one between them) with at least `n - 2`
    characters between them. No lookahead: schemathesis and Hypothesis build strings from a pattern like this
    one, where a lookahead makes them generate and throw away (the contract test took 8 minutes instead of 2)."""
    char, kept = (_MULTI_LINE_CHAR, _MULTI_LINE_KEPT) if multiline else (_SINGLE_LINE_CHAR, _SINGLE_LINE_KEPT)
    shown = kept[:-1] + _SHOWS_NOTHING + "]"
    if n <= 1:
        return rf"^{char}*{shown}{char}*$"
    between = f"{char}{{{n - 2},}}"
    if multiline and n > 3:
        # Between the two kept characters a CRLF is one repetition but two characters: exact only up to 3.
        raise ValueError("a stripped multi-line text's minimum length above 3 cannot be stated as a pattern")
    if n > 3:  # a visible one among the `n - 2` between cannot be said without a lookahead: the length only
        return rf"^{char}*{kept}{between}{kept}{char}*$"
    return (
        rf"^{char}*(?:{shown}{between}{kept}|{kept}{between}{shown}|{kept}{char}*{shown}{char}*{kept})"
        rf"{char}*$"
    )


def control_character_problem(value: str, multiline: bool) -> str | None:
    """None if `value` may be stored, else a message for people naming the first offending character."""
    found = (_MULTI_LINE_FORBIDDEN if multiline else SINGLE_LINE_FORBIDDEN).search(value)
    if found is None:
        return None
    index = found.start()
    if _BIDI_CONTROL.match(found.group()):
        return f"bidirectional control characters are not allowed; found U+{ord(value[index]):04X} at index {index}"
    if found.group() in "\u2028\u2029":
        return (
            f"line breaks are not allowed (a single line); found U+{ord(value[index]):04X} at index {index}"
        )
    what = "control characters other than line breaks and tabs are" if multiline else "control characters are"
    shape = "" if multiline else " (a single line: no line breaks or tabs)"
    return f"{what} not allowed{shape}; found U+{ord(value[index]):04X} at index {index}"


def _checker(multiline: bool) -> BeforeValidator:
    def check(value: Any) -> Any:
        # Before the str validation (and its whitespace stripping), so nothing is silently dropped;
        # non-strings go on to the str validator, which refuses them with its own message.
        if isinstance(value, str) and (problem := control_character_problem(value, multiline)):
            raise PydanticCustomError("control_character", problem)
        return value

    return BeforeValidator(check)


_CHECK_SINGLE_LINE = _checker(multiline=False)
_CHECK_MULTI_LINE = _checker(multiline=True)


# Characters that show nothing: separators, format characters (zero-width space, joiners, BOM, tags), combining
# marks with nothing to combine with, and the letters that render blank (Hangul fillers, the braille blank).
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def _shows_something(value: str) -> bool:
    return any(
        c not in _BLANK_LETTERS and unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in value
    )


def _refuse_blank(value: Any) -> Any:
    """A value that shows nothing is blank, said so: whitespace alone (the length rule after stripping would call
    "   " too short for 3 characters), or invisible characters alone (a title of zero-width spaces)."""
    if isinstance(value, str) and value and not _shows_something(value):
        raise PydanticCustomError(
            "blank", "must not be blank (it holds only whitespace or invisible characters)"
        )
    return value


_CHECK_NOT_BLANK = BeforeValidator(_refuse_blank)


@dataclass(frozen=True)
class _DocumentedPattern:
    """The rule in the field's JSON Schema as a `pattern` (unless the field has a pattern of its own, which then
    excludes these characters too); the check itself stays `_checker`'s, whose message names the character."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("pattern", self.pattern)
        return schema


def refuse_control_characters(multiline: bool = False) -> BeforeValidator:
    """The check alone, for types parsed from a string that are not plain `str` (URLs, emails):
    `Annotated[HttpUrl, refuse_control_characters()]`. It sees the raw input, before any parsing."""
    return _CHECK_MULTI_LINE if multiline else _CHECK_SINGLE_LINE


@dataclass(frozen=True)
class _Text(annotated_types.GroupedMetadata):
    """Pydantic metadata for `Annotated[str, ...]`: the length/pattern constraints plus the Cc check."""

    multiline: bool
    min_length: int | None
    max_length: int | None
    pattern: str | None
    strip: bool

    def __iter__(self) -> Iterator[object]:
        # Constraints first, then the check: pydantic wraps in order, so the check runs before them.
        yield from StringConstraints(
            strip_whitespace=self.strip or None,
            min_length=self.min_length,
            max_length=self.max_length,
            pattern=self.pattern,
        )
        if self.strip and self.min_length:
            yield _CHECK_NOT_BLANK  # (after the control characters' check, which wraps it)
        yield _CHECK_MULTI_LINE if self.multiline else _CHECK_SINGLE_LINE
        if self.strip and self.min_length:
            # The length is checked after stripping: "   " is too short for a minLength of 1 that the document
            # alone would let through, so the pattern says so.
            yield _DocumentedPattern(_stripped_length_at_least(self.multiline, self.min_length))
        else:
            yield _DocumentedPattern(MULTI_LINE_PATTERN if self.multiline else SINGLE_LINE_PATTERN)


def single_line(
    min_length: int | None = None,
    max_length: int | None = None,
    *,
    pattern: str | None = None,
    strip: bool = True,
) -> _Text:
    """One line of text: no control characters at all. Leading/trailing whitespace is stripped before the
    length check unless `strip=False` (passwords)."""
    return _Text(False, min_length, max_length, pattern, strip)


def multi_line(min_length: int | None = None, max_length: int | None = None, *, strip: bool = True) -> _Text:
    """Long text: line breaks (LF, CRLF) and tabs kept, every other control character refused."""
    return _Text(True, min_length, max_length, None, strip)


# For a field with no length rule of its own (give every request field one, though).
SingleLine = Annotated[str, single_line()]
MultiLine = Annotated[str, multi_line()]
