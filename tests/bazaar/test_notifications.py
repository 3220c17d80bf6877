from __future__ import annotations

import uuid

import pytest

from bazaar.errors import DomainError
from bazaar.notifications import EVENT_TYPES, read_unsubscribe_token, render, unsubscribe_token
from bazaar.trust_models import NotificationChannel

FULL = {
    k: f"<{k}>"
    for k in (
        "recipient_name",
        "buyer_name",
        "listing_title",
        "amount",
        "deadline",
        "order_url",
        "reason",
        "tracking",
        "payout",
        "message",
        "resolution",
        "opened_at",
    )
}


def test_catalogue_covers_the_issue() -> None:
    assert EVENT_TYPES >= {
        "order_paid",
        "order_accepted",
        "order_declined",
        "order_shipped",
        "order_completed",
        "review_invitation",
        "dispute_opened",
        "dispute_updated",
        "dispute_resolved",
        "acceptance_deadline_approaching",
    }


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_template_renders_completely(event_type: str) -> None:
    subject, body = render(event_type, FULL)
    assert subject and "\n" not in subject
    assert "$" not in subject + body, f"unfilled placeholder in {event_type}"
    assert "<recipient_name>" in body


def test_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError):
        render("nope", {})


def test_unsubscribe_token_round_trip_and_tamper() -> None:
    user = uuid.uuid4()
    token = unsubscribe_token("s3cret", user, "order_paid", NotificationChannel.EMAIL)
    assert read_unsubscribe_token("s3cret", token) == (user, "order_paid", NotificationChannel.EMAIL)
    with pytest.raises(DomainError):
        read_unsubscribe_token("other-secret", token)
    signature = token.split(".")[1]
    forged = unsubscribe_token("s3cret", uuid.uuid4(), "order_paid", NotificationChannel.EMAIL).split(".")[0]
    with pytest.raises(DomainError):
        read_unsubscribe_token("s3cret", f"{forged}.{signature}")
    with pytest.raises(DomainError):
        read_unsubscribe_token("s3cret", "garbage")
