"""Whose integrations: a seller's (the events about their own orders, listings, reviews, disputes and payouts) or
the platform's (every event). API keys and webhook endpoints belong to one scope; a user session acts for one."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Role


class ScopeKind(enum.StrEnum):
    SELLER = "seller"
    PLATFORM = "platform"


@dataclass(frozen=True)
class Scope:
    """A caller of the integration routes: its scope (`seller_id`, None for the platform), the user acting (a
    session's user, or the API key's creator) and the API key it authenticated with, if any."""

    seller_id: uuid.UUID | None
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None = None

    @property
    def kind(self) -> ScopeKind:
        return ScopeKind.PLATFORM if self.seller_id is None else ScopeKind.SELLER


def for_user(caller: Principal, wanted: ScopeKind | None = None) -> Scope:
    """The scope a signed-in user acts for: `wanted`, or by default their seller scope if they sell, else the
    platform's if they are support staff. A seller's scope needs the seller role, the platform's support's."""
    asked, wanted = (
        wanted,
        wanted or (ScopeKind.SELLER if Role.SELLER.value in caller.roles else ScopeKind.PLATFORM),
    )
    if wanted == ScopeKind.SELLER and Role.SELLER.value in caller.roles:
        return Scope(seller_id=caller.user_id, user_id=caller.user_id)
    if wanted == ScopeKind.PLATFORM and caller.has(Role.SUPPORT):
        return Scope(seller_id=None, user_id=caller.user_id)
    if asked is None:  # found from outside: a buyer was told of a platform scope they never asked for
        raise DomainError(
            ErrorCode.FORBIDDEN,
            "integrations are for sellers (their own events) and support staff (the platform's)",
        )
    raise DomainError(
        ErrorCode.FORBIDDEN,
        f"integrations of the {wanted.value} scope need the "
        f"{'seller' if wanted == ScopeKind.SELLER else 'support'} role",
    )
