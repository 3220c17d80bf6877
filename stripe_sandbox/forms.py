"""Decode Stripe-style form bodies (``metadata[k]=v``, ``expand[0]=x``, ``expand[]=x``).

Stripe's API takes ``application/x-www-form-urlencoded`` with bracketed keys for
nesting; the official SDK emits exactly that, so the sandbox must invert it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

# Containers whose keys are user data: never turn their numeric keys into a list.
_FREE_FORM_KEYS = frozenset({"metadata"})


class FormError(ValueError):
    """Raised for a key that cannot be decoded (e.g. ``a[b]`` after ``a=1``)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def split_key(key: str) -> list[str]:
    """Split ``a[b][0][]`` into ``["a", "b", "0", ""]``."""
    head, sep, rest = key.partition("[")
    if not sep:
        return [key]
    rest = "[" + rest
    parts = [head]
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            raise FormError(f"Invalid array or hash key: {key}", key)
        parts.append(match.group(1))
        pos = match.end()
    if pos != len(rest):
        raise FormError(f"Invalid array or hash key: {key}", key)
    return parts


def _insert(tree: dict[str, Any], parts: list[str], value: str, key: str) -> None:
    node: dict[str, Any] = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        name = part
        if name == "":
            # ``expand[]=x``: append with the next free numeric index.
            name = str(len(node))
        if last:
            if isinstance(node.get(name), dict):
                raise FormError(f"Invalid value for {key}: expected a hash", key)
            node[name] = value
            return
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise FormError(f"Invalid hash for {key}", key)
        node = child


def _listify(value: Any, parent: str | None) -> Any:
    """Turn dicts keyed ``0..n-1`` into lists (except free-form ``metadata``)."""
    if not isinstance(value, dict):
        return value
    if parent in _FREE_FORM_KEYS:
        return {k: _listify(v, None) for k, v in value.items()}
    converted = {k: _listify(v, k) for k, v in value.items()}
    keys = list(converted)
    if keys and all(k.isdigit() for k in keys):
        indices = sorted(int(k) for k in keys)
        if indices == list(range(len(indices))):
            return [converted[str(i)] for i in indices]
    return converted


def parse_form(body: str) -> dict[str, Any]:
    """Decode a urlencoded Stripe request body or query string into nested dicts/lists."""
    tree: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        _insert(tree, split_key(key), value, key)
    result = _listify(tree, None)
    assert isinstance(result, dict)
    return result
