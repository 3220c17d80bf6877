"""The password policy (bazaar.accounts.passwords): length bounds and zxcvbn's strength with the user's inputs."""

from __future__ import annotations

import random
import string

import pytest

from bazaar.accounts.passwords import MAX_LENGTH, check_new_password
from bazaar.errors import DomainError


@pytest.mark.parametrize(
    "password",
    ["aaaaaaaaaa", "password1234", "1234567890", "qwertyuiop", "iloveyou123", "Password1!", "letmein2020"],
)
def test_common_and_breached_passwords_are_refused(password: str) -> None:
    with pytest.raises(DomainError) as refused:
        check_new_password(password, user_inputs=["someone@example.com", "Someone"])
    assert refused.value.code == "validation_error"
    assert refused.value.details["errors"][0] == {
        "loc": ["body", "password"],
        "msg": refused.value.message.removeprefix("password: "),
        "type": "weak_password",
    }


def test_the_users_own_inputs_count_against_a_password() -> None:
    strong_elsewhere = "Delacroix2024!"
    check_new_password(strong_elsewhere, user_inputs=["bob@example.com", "Bob"])
    with pytest.raises(DomainError):
        check_new_password(
            strong_elsewhere, user_inputs=["marguerite.delacroix@example.com", "Marguerite Delacroix"]
        )


@pytest.mark.parametrize(
    "password", ["correct-horse-battery", "tangerine harbour quietly", "Tr0ub4dor&3x!zz"]
)
def test_strong_passwords_pass(password: str) -> None:
    check_new_password(password, user_inputs=["someone@example.com", "Someone"])


def test_length_bounds_and_the_field_named() -> None:
    long = "".join(random.Random(7).choices(string.ascii_letters + string.digits + "-$#", k=126))
    check_new_password(long, user_inputs=[])  # scored on its first 72 characters
    with pytest.raises(DomainError) as too_long:
        check_new_password("z" * (MAX_LENGTH + 1), user_inputs=[], field="new_password")
    assert too_long.value.details["errors"][0]["loc"] == ["body", "new_password"]
    assert too_long.value.details["errors"][0]["type"] == "string_too_long"
    with pytest.raises(DomainError) as too_short:
        check_new_password("x7$q", user_inputs=[])
    assert too_short.value.details["errors"][0]["type"] == "string_too_short"
