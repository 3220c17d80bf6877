"""The password policy: at most `MAX_LENGTH` characters (hashing stays cheap), and strong enough by zxcvbn, which
scores common, breached-list, keyboard-pattern and dictionary passwords low, and passwords built from the user's
own email or name too."""

from __future__ import annotations

import re

from zxcvbn import zxcvbn

from bazaar.errors import field_error
from bazaar.settings import get_settings

MIN_LENGTH = 10
MAX_LENGTH = 128
# zxcvbn's own bound (its matching is polynomial in the length): longer passwords are judged by this prefix.
_SCORED_LENGTH = 72


def check_new_password(password: str, *, user_inputs: list[str], field: str = "password") -> None:
    """Refuse (422 `validation_error` naming `field`) a password too short, too long or too easy to guess."""
    if len(password) > MAX_LENGTH:
        raise field_error(field, f"at most {MAX_LENGTH} characters", "string_too_long")
    if len(password) < MIN_LENGTH:
        raise field_error(field, f"at least {MIN_LENGTH} characters", "string_too_short")
    # Each input whole, an email's local part, and their words: "ann.marie@..." counts "ann" and "marie" too.
    inputs = [
        part
        for value in user_inputs
        for part in (value, value.split("@")[0], *re.split(r"[^\w]+", value.split("@")[0]))
        if len(part) >= 3
    ]
    result = zxcvbn(password[:_SCORED_LENGTH], user_inputs=inputs)
    score = int(result["score"])
    if score < get_settings().password_min_score:
        feedback = result.get("feedback") or {}
        warning = str(feedback.get("warning") or "").rstrip(".")
        message = "too easy to guess" + (f" ({warning})" if warning else "")
        raise field_error(
            field,
            message + ": use a longer passphrase of uncommon words",
            "weak_password",
            score=score,
            suggestions=[str(s) for s in feedback.get("suggestions") or []],
        )
