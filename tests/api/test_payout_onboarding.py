"""Seller onboarding on the real stack: a payout account's standing comes from the provider's `account.updated`
events (through the verified, de-duplicated webhook), gates publishing, and takes a seller whose charges are
disabled out of search (Meilisearch and the PostgreSQL fallback) until they are enabled again."""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bazaar.listings.lifecycle import taxonomy
from bazaar.models import PayoutAccount
from bazaar.payments import onboarding
from bazaar.search.fallback import search_postgres
from bazaar.search.query import ListingQuery
from tests.support.http import (
    Actor,
    listing_body,
    published_listing,
    register,
    seller_with_payout,
    wait_until,
)
from tests.support.money import post_event, post_signed, provider, sql

pytestmark = pytest.mark.integration

NOT_READY = [False, False, False]
READY = [True, True, True]


def control(stack: Any, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sandbox test control (what Stripe's dashboard or its verification team would do)."""
    response = httpx.post(f"{stack.stripe_api_base}{path}", json=body or {}, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@contextmanager
def pending_accounts(stack: Any) -> Iterator[None]:
    """New connected accounts start pending onboarding, as on Stripe (the stack's sandbox onboards them at once)."""
    control(stack, "/_sandbox/settings", {"new_accounts": "pending"})
    try:
        yield
    finally:
        control(stack, "/_sandbox/settings", {"new_accounts": "onboarded"})


def status(http: httpx.Client, seller: Actor) -> dict[str, Any]:
    response = http.get("/v1/payout-account", headers=seller.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def flags(account: dict[str, Any]) -> list[bool | None]:
    return [account["details_submitted"], account["charges_enabled"], account["payouts_enabled"]]


def status_when(http: httpx.Client, seller: Actor, expected: Sequence[bool | None]) -> dict[str, Any]:
    """The account once the provider's report of `expected` flags arrived (webhooks are asynchronous)."""
    wait_until(lambda: flags(status(http, seller)) == list(expected))
    return status(http, seller)


def reported_seller(http: httpx.Client) -> tuple[Actor, str]:
    """A seller whose account (onboarded at once by the stack's sandbox) the provider has reported."""
    seller = seller_with_payout(http)
    account = status_when(http, seller, READY)
    return seller, str(account["provider_account_id"])


def marker() -> str:
    return "".join(random.choices(string.ascii_lowercase, k=12))


def meili_ids(http: httpx.Client, word: str) -> set[str]:
    response = http.get("/v1/search/listings", params={"q": word})
    assert response.status_code == 200 and response.headers["X-Search-Backend"] == "meilisearch", (
        response.text
    )
    return {hit["id"] for hit in response.json()["hits"]}


T = TypeVar("T")


def in_session(stack: Any, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run domain code in a transaction of its own on the stack's database (for these synchronous tests)."""

    async def run() -> T:
        engine = create_async_engine(stack.database_url, pool_size=1)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def fallback_ids(stack: Any, word: str) -> set[str]:
    async def search(session: AsyncSession) -> set[str]:
        result = await search_postgres(session, ListingQuery(q=word), await taxonomy(session))
        return {hit["id"] for hit in result.hits}

    return in_session(stack, search)


def payouts_enabled(stack: Any, user_id: str) -> bool:
    return in_session(stack, lambda session: onboarding.payouts_enabled(session, uuid.UUID(user_id)))


def test_concurrent_creations_of_one_account_answer_one_201_and_the_rest_200(http: httpx.Client) -> None:
    """Found from outside: eight identical requests at once answered 201 seven times (one account was made).
    One of them creates it (201); the others answer it as a replay does (200). A request for another country
    at the same time is refused with the account's (409), whichever comes first."""

    async def create_all(seller: Actor, bodies: list[dict[str, str]]) -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=str(http.base_url), headers=seller.headers, timeout=30
        ) as client:
            return list(await asyncio.gather(*(client.post("/v1/payout-account", json=b) for b in bodies)))

    answers = asyncio.run(create_all(register(http, ["seller"], "Seller"), [{"country": "DE"}] * 8))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["provider_account_id"] for a in answers}) == 1

    de, fr = asyncio.run(
        create_all(
            register(http, ["seller"], "Seller"),
            [{"country": "DE"}, {"country": "FR", "default_currency": "USD"}],
        )
    )
    assert sorted([de.status_code, fr.status_code]) == [201, 409], (de.text, fr.text)
    refused = fr if fr.status_code == 409 else de
    assert refused.json()["error"]["code"] == "payout_account_exists"


def test_onboarding_gates_publishing(http: httpx.Client, stack: Any) -> None:
    seller = register(http, ["seller"], "Onboarding Seller")
    urls = {
        "refresh_url": "https://seller.example.com/refresh",
        "return_url": "https://seller.example.com/done",
    }
    none_yet = http.post("/v1/payout-account/onboarding-link", json=urls, headers=seller.headers)
    assert (none_yet.status_code, none_yet.json()["error"]["code"]) == (409, "payout_account_required")
    bad = http.post(
        "/v1/payout-account/onboarding-link", json={**urls, "return_url": "done"}, headers=seller.headers
    )
    assert bad.status_code == 422
    # Found from outside: a country that does not exist ("ZZ") made an account that could sell and be paid.
    nowhere = http.post(
        "/v1/payout-account", json={"country": "ZZ", "default_currency": "EUR"}, headers=seller.headers
    )
    assert (nowhere.status_code, nowhere.json()["error"]["details"]["errors"][0]["loc"]) == (
        422,
        ["body", "country"],
    )
    with pending_accounts(stack):
        created = http.post(
            "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=seller.headers
        )
    assert created.status_code == 201, created.text
    account_id = created.json()["provider_account_id"]

    # The provider reports the new account: nothing enabled, details due.
    pending = status_when(http, seller, NOT_READY)
    assert pending["requirements"]["disabled_reason"] == "requirements.past_due"
    assert "external_account" in pending["requirements"]["currently_due"]
    assert pending["requirements"]["past_due"] == []

    listing = http.post("/v1/listings", json=listing_body(), headers=seller.headers).json()
    refused = http.post(f"/v1/listings/{listing['id']}/publish", headers=seller.headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payout_account_not_ready"
    assert error["details"]["requirements"]["currently_due"] == pending["requirements"]["currently_due"]

    # The seller completes the hosted onboarding of an account link: the report enables the account.
    urls = {
        "refresh_url": "https://seller.example.com/refresh",
        "return_url": "https://seller.example.com/done",
    }
    made = http.post("/v1/payout-account/onboarding-link", json=urls, headers=seller.headers)
    assert made.status_code == 200, made.text
    link = made.json()
    assert link["url"].startswith(f"{stack.stripe_api_base}/setup/s/{account_id}/")
    assert datetime.fromisoformat(link["expires_at"]) > datetime.now(UTC)
    assert httpx.get(link["url"], follow_redirects=False, timeout=10).status_code == 302
    ready = status_when(http, seller, READY)
    assert ready["requirements"] == {"currently_due": [], "past_due": [], "disabled_reason": None}
    published = http.post(f"/v1/listings/{listing['id']}/publish", headers=seller.headers)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "active"


def test_a_link_the_provider_refuses_is_a_conflict_not_an_outage(http: httpx.Client, stack: Any) -> None:
    """A final refusal (here: the provider no longer knows the account) answers 409 with the provider's reason;
    503 would tell the seller to retry what can never succeed."""
    seller = seller_with_payout(http)
    gone = f"acct_gone{uuid.uuid4().hex[:12]}"
    sql(stack, "UPDATE payout_accounts SET provider_account_id = %s WHERE user_id = %s", gone, seller.user_id)
    urls = {
        "refresh_url": "https://seller.example.com/refresh",
        "return_url": "https://seller.example.com/done",
    }
    refused = http.post("/v1/payout-account/onboarding-link", json=urls, headers=seller.headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payout_account_refused"
    assert gone in error["message"]


def _account_event(stack: Any, account_id: str, created: int, **changes: Any) -> str:
    """A signed `account.updated` payload: the provider's current account with `changes`, sent at `created`."""
    account = {**provider(stack, "GET", f"/v1/accounts/{account_id}"), **changes}
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "account.updated",
            "created": created,
            "data": {"object": account},
        }
    )


def test_account_updated_events_apply_in_order(http: httpx.Client, stack: Any) -> None:
    seller, account_id = reported_seller(http)
    now = int(time.time())

    # A newer report applies (here: payouts disabled, a bank account past due)...
    requirements = {
        "currently_due": ["external_account"],
        "past_due": ["external_account"],
        "disabled_reason": None,
    }
    newer = _account_event(stack, account_id, now + 5, payouts_enabled=False, requirements=requirements)
    assert post_signed(http, stack, newer).json() == {"received": True, "duplicate": False, "handled": True}
    restricted = status(http, seller)
    assert flags(restricted) == [True, True, False]
    assert restricted["requirements"] == requirements
    # ...a redelivery of it is a duplicate, and a report older than it changes nothing.
    assert post_signed(http, stack, newer).json() == {"received": True, "duplicate": True}
    stale = _account_event(stack, account_id, now - 60, payouts_enabled=True)
    assert post_signed(http, stack, stale).json()["handled"] is False
    assert flags(status(http, seller)) == [True, True, False]
    assert sql(
        stack, "SELECT status_reported_at FROM payout_accounts WHERE provider_account_id = %s", account_id
    ) == [(now + 5,)]

    # Not one of our accounts: stored, nothing else. Without its created time: unreadable, nothing stored.
    other = post_event(
        http, stack, "account.updated", {"id": "acct_unknown", "object": "account"}, "evt_" + marker()
    )
    assert other.json()["handled"] is False
    timeless = json.dumps(
        {"id": "evt_" + marker(), "type": "account.updated", "data": {"object": {"id": account_id}}}
    )
    refused = post_signed(http, stack, timeless)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_event")


def test_a_report_that_arrives_before_the_account_row_is_applied_with_it(
    http: httpx.Client, stack: Any
) -> None:
    seller = register(http, ["seller"], "Early Report Seller")
    account_id = f"acct_early{uuid.uuid4().hex[:12]}"
    report = {
        "id": account_id,
        "object": "account",
        "details_submitted": True,
        "charges_enabled": False,
        "payouts_enabled": False,
        "requirements": {
            "currently_due": ["individual.id_number"],
            "past_due": [],
            "disabled_reason": "under_review",
        },
    }
    first = post_event(http, stack, "account.updated", report, f"evt_{uuid.uuid4().hex}")
    assert first.json()["handled"] is False  # no row of ours yet: the event stays stored

    async def create_row(session: AsyncSession) -> None:
        row = PayoutAccount(
            user_id=uuid.UUID(seller.user_id),
            provider_account_id=account_id,
            country="DE",
            default_currency="EUR",
        )
        session.add(row)
        await session.flush()
        await onboarding.apply_stored_report(session, row)

    in_session(stack, create_row)
    assert flags(status(http, seller)) == [True, False, False]
    assert status(http, seller)["requirements"]["disabled_reason"] == "under_review"


def test_restricted_seller_leaves_search_until_fixed(http: httpx.Client, stack: Any) -> None:
    seller, account_id = reported_seller(http)
    other = seller_with_payout(http)
    word = marker()
    mine = published_listing(http, seller, title=f"Gravel bike {word}")["id"]
    theirs = published_listing(http, other, title=f"Touring bike {word}")["id"]
    both = {mine, theirs}
    wait_until(lambda: meili_ids(http, word) == both, timeout=20)
    assert fallback_ids(stack, word) == both

    # Payouts disabled: transfers wait (payouts_enabled), but the seller still sells and is found.
    control(stack, f"/_sandbox/accounts/{account_id}/restrict", {"disable": "payouts"})
    status_when(http, seller, [True, True, False])
    assert payouts_enabled(stack, seller.user_id) is False
    assert payouts_enabled(stack, other.user_id) is True
    assert payouts_enabled(stack, str(uuid.uuid4())) is False  # no payout account at all
    assert meili_ids(http, word) == both

    assert http.get(f"/v1/listings/{mine}").json()["purchasable"] is True
    early = register(http, ["buyer"], "Early Buyer")  # has it in their cart before the restriction
    assert http.put(f"/v1/cart/lines/{mine}", json={"quantity": 1}, headers=early.headers).status_code == 200

    # Charges disabled: the seller's listings leave search (both backends) and nothing new is published.
    control(stack, f"/_sandbox/accounts/{account_id}/restrict", {"disable": "charges"})
    restricted = status_when(http, seller, [True, False, False])
    assert restricted["requirements"]["disabled_reason"] == "requirements.past_due"
    assert fallback_ids(stack, word) == {theirs}
    wait_until(lambda: meili_ids(http, word) == {theirs}, timeout=20)
    draft = http.post(
        "/v1/listings", json=listing_body(title=f"City bike {word}"), headers=seller.headers
    ).json()
    refused = http.post(f"/v1/listings/{draft['id']}/publish", headers=seller.headers)
    assert refused.json()["error"]["code"] == "payout_account_not_ready"
    assert http.get(f"/v1/listings/{mine}").status_code == 200  # still there for whoever has its link
    # ...but not for sale: ordering it, like putting it in a cart, is refused with nothing taken.
    buyer = register(http, ["buyer"], "Link Holder")
    ordered = http.post(
        "/v1/orders",
        json={"listing_id": mine, "payment_method": "pm_card_visa"},
        headers={**buyer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert (ordered.status_code, ordered.json()["error"]["code"]) == (409, "listing_not_available"), (
        ordered.text
    )
    carted = http.put(f"/v1/cart/lines/{mine}", json={"quantity": 1}, headers=buyer.headers)
    assert (carted.status_code, carted.json()["error"]["code"]) == (409, "listing_not_available")
    # Found from outside: the listing read said nothing of it, and the cart said 0 available where the
    # checkout's refusal said 5. The listing says it cannot be ordered now; the cart and the checkout agree.
    wait_until(lambda: http.get(f"/v1/listings/{mine}").json()["purchasable"] is False, timeout=10)
    [line] = http.get("/v1/cart", headers=early.headers).json()["lines"]
    assert line["available_quantity"] == 0
    checkout = http.post(
        "/v1/checkouts",
        json={"payment_method": "pm_card_visa"},
        headers={**early.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert (checkout.status_code, checkout.json()["error"]["code"]) == (409, "cart_changed"), checkout.text
    assert [x["available_quantity"] for x in checkout.json()["error"]["details"]["lines"]] == [0]

    # Fixed: back in search, and payouts go out again.
    control(stack, f"/_sandbox/accounts/{account_id}/onboard")
    status_when(http, seller, READY)
    wait_until(lambda: http.get(f"/v1/listings/{mine}").json()["purchasable"] is True, timeout=10)
    assert fallback_ids(stack, word) == both
    wait_until(lambda: meili_ids(http, word) == both, timeout=20)
    assert payouts_enabled(stack, seller.user_id) is True
