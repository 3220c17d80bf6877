"""Request and response models of accounts: registration's uniform answer, token pairs, email verification,
password reset and change (registration's and the login form's models: api/schemas.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, EmailStr, Field

from api.schemas import GivenPassword, UserOut, example
from bazaar.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from bazaar.json_types import JsonBool
from bazaar.text import refuse_control_characters, single_line

# A mailed token: 43 URL-safe characters (256 bits); the bound keeps junk out of the hashing.
MailedToken = Annotated[str, single_line(min_length=1, max_length=200, strip=False)]
NewPassword = Annotated[str, single_line(min_length=MIN_LENGTH, max_length=MAX_LENGTH, strip=False)]


class Accepted(BaseModel):
    """The same answer whatever the address: what happened is told to the address's owner by mail."""

    status: Literal["accepted"] = "accepted"
    message: str


class TokenPairOut(BaseModel):
    """An access token (short; send it as `Authorization: Bearer`) and the refresh token that gets the next
    pair (POST /v1/auth/refresh; each works once)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds the access token is valid")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds the refresh token is valid (if not used before)")


class RefreshIn(BaseModel):
    model_config = example({"refresh_token": "Hk3xY0d5Qm2l9Zp8rT1vW6uE4sA7bN0cJ5gF2hD8kLq"})
    refresh_token: MailedToken


class LogoutIn(BaseModel):
    model_config = example({"everywhere": False}, {})
    everywhere: JsonBool = Field(
        default=False, description="end every session of the account, not just this one"
    )


class TokenIn(BaseModel):
    model_config = example({"token": "Hk3xY0d5Qm2l9Zp8rT1vW6uE4sA7bN0cJ5gF2hD8kLq"})
    token: MailedToken = Field(description="from the link in the email")


class PasswordResetIn(BaseModel):
    model_config = example({"email": "sam@example.com"})
    email: Annotated[EmailStr, refuse_control_characters()]


class PasswordResetConfirmIn(BaseModel):
    model_config = example(
        {"token": "Hk3xY0d5Qm2l9Zp8rT1vW6uE4sA7bN0cJ5gF2hD8kLq", "password": "a-new-long-passphrase-9"},
    )
    token: MailedToken = Field(description="from the link in the email")
    password: NewPassword


class PasswordChangeIn(BaseModel):
    model_config = example({"current_password": "sam-password-1", "new_password": "a-new-long-passphrase-9"})
    current_password: GivenPassword
    new_password: NewPassword


class AccountOut(UserOut):
    email_verified: bool
