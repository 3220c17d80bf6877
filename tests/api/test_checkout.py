"""Checkout across sellers on the real stack: one charge for the cart, one order per seller, each paid its share
less the fee; a seller declining refunds only its part; the ledger balances per order and per checkout; the
refusals (empty cart, a line that changed) take nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from api.routes.checkouts import CHECKOUT_ID_NAMESPACE
from bazaar.orders.terms import DEFAULT_TERMS
from bazaar.payments.money import platform_fee
from tests.support.http import Actor, at_once, published_listing, register, seller_with_payout, support_user
from tests.support.money import (
    act,
    act_then_paid_out,
    assert_balanced,
    ledger_accounts,
    order_until,
    provider_list,
    refunds_for,
    sql,
    transfers_for,
)
from tests.support.reconciliation import next_second, reconcile

pytestmark = pytest.mark.integration


def put_line(http: httpx.Client, buyer: Actor, listing_id: str, quantity: int = 1) -> None:
    response = http.put(f"/v1/cart/lines/{listing_id}", json={"quantity": quantity}, headers=buyer.headers)
    assert response.status_code == 200, response.text


def checkout(
    http: httpx.Client, buyer: Actor, key: str | None = None, pm: str = "pm_card_visa"
) -> httpx.Response:
    return http.post(
        "/v1/checkouts",
        json={"payment_method": pm},
        headers={**buyer.headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


def every_event(http: httpx.Client, auth: dict[str, str]) -> list[dict[str, Any]]:
    """The whole events feed the key sees, page by page (a platform key sees every test's events)."""
    seen: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        params = {"limit": 100} | ({"after": after} if after is not None else {})
        page = http.get("/v1/events", params=params, headers=auth)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        after = page.json()["next_cursor"]
        if not page.json()["has_more"]:
            return seen


def intents_of_checkout(stack: Any, checkout_id: str) -> list[dict[str, Any]]:
    return [
        pi
        for pi in provider_list(stack, "/v1/payment_intents")
        if pi["metadata"].get("checkout_id") == checkout_id
    ]


def test_a_cart_of_three_sellers_is_paid_once_and_each_seller_gets_its_share(
    http: httpx.Client, stack: Any
) -> None:
    since = next_second()
    sellers = [seller_with_payout(http) for _ in range(3)]
    prices = [45_000, 2_500, 12_000]
    listings = [
        published_listing(http, seller, price={"amount": price, "currency": "EUR"}, quantity=3)
        for seller, price in zip(sellers, prices, strict=True)
    ]
    second_of_first = published_listing(http, sellers[0], price={"amount": 1_000, "currency": "EUR"})
    buyer = register(http, ["buyer"], "Cart Buyer")
    for listing in listings:
        put_line(http, buyer, listing["id"], 2 if listing is listings[1] else 1)
    put_line(http, buyer, second_of_first["id"])

    key = str(uuid.uuid4())
    answered = checkout(http, buyer, key)
    assert answered.status_code == 201, answered.text
    body = answered.json()
    total = 45_000 + 1_000 + 2 * 2_500 + 12_000
    assert (body["status"], body["total"]) == ("paid", {"amount": total, "currency": "EUR"})
    assert answered.headers["Location"] == f"/v1/checkouts/{body['id']}"
    orders = {order["seller_id"]: order for order in body["orders"]}
    assert set(orders) == {seller.user_id for seller in sellers}
    first = orders[sellers[0].user_id]
    assert first["total"] == {"amount": 46_000, "currency": "EUR"}
    assert [(line["listing_id"], line["quantity"]) for line in first["lines"]] == [
        (listings[0]["id"], 1),
        (second_of_first["id"], 1),
    ]
    assert all(order["checkout_id"] == body["id"] for order in body["orders"])

    # One PaymentIntent for the whole cart; the cart is empty; the stock is taken.
    (intent,) = intents_of_checkout(stack, body["id"])
    assert (intent["amount"], intent["status"], intent["transfer_group"]) == (
        total,
        "succeeded",
        body["workflow_id"],
    )
    assert http.get("/v1/cart", headers=buyer.headers).json()["lines"] == []
    assert http.get(f"/v1/listings/{listings[1]['id']}").json()["quantity"] == 1

    # A replay answers the same checkout; another payment method with the key is refused.
    replay = checkout(http, buyer, key)
    assert (replay.status_code, replay.json()["id"]) == (200, body["id"])
    assert (
        checkout(http, buyer, key, pm="pm_card_mastercard").json()["error"]["code"]
        == "idempotency_key_reused"
    )

    # Each order runs on its own: the second seller declines (only its part is refunded), the others complete.
    declined_seller = sellers[1]
    declined = act(http, orders[declined_seller.user_id]["id"], "decline", declined_seller)
    assert (declined["status"], declined["payment_state"]) == ("cancelled", "refunded")
    assert [r["amount"] for r in refunds_for(stack, intent["id"])] == [2 * 2_500]
    assert http.get(f"/v1/listings/{listings[1]['id']}").json()["quantity"] == 3
    for seller in (sellers[0], sellers[2]):
        order_id = orders[seller.user_id]["id"]
        act(http, order_id, "accept", seller)
        act(http, order_id, "fulfil", seller)
        done = act_then_paid_out(http, order_id, "confirm-receipt", buyer)
        assert (done["status"], done["payment_state"]) == ("completed", "released")

    transfers = provider_list(stack, "/v1/transfers", transfer_group=body["workflow_id"])
    paid = {t["metadata"]["order_id"]: t["amount"] for t in transfers}
    fee = {
        amount: platform_fee(amount, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"])
        for amount in prices
    }
    assert paid == {
        orders[sellers[0].user_id]["id"]: 46_000
        - platform_fee(46_000, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"]),
        orders[sellers[2].user_id]["id"]: 12_000 - fee[12_000],
    }

    # The ledger: the one charge is each order's escrow; every order and the checkout sum to zero.
    order_ids = [order["id"] for order in body["orders"]]
    assert_balanced(stack, *order_ids)
    charged = sql(
        stack,
        "SELECT order_id::text, amount FROM ledger_entries WHERE txn = %s AND account = 'escrow'",
        f"checkout-{body['id']}:charge:1",
    )
    assert sorted(amount for _, amount in charged) == sorted([46_000, 5_000, 12_000])
    assert ledger_accounts(stack, orders[declined_seller.user_id]["id"]).get("refunds") == 5_000
    (checkout_total,) = sql(
        stack,
        "SELECT coalesce(sum(e.amount), 0) FROM ledger_entries e JOIN orders o ON o.id = e.order_id "
        "WHERE o.checkout_id = %s",
        uuid.UUID(body["id"]),
    )
    assert checkout_total == (0,)

    # Reconciliation pairs the one PaymentIntent with the checkout's charge, each refund and transfer with its order.
    summary = reconcile(stack, since, next_second())
    assert [d for d in summary.discrepancies if d.order_id in order_ids or body["id"] in d.detail] == []
    for order_id in order_ids:
        statement = http.get(f"/v1/orders/{order_id}/money", headers=buyer.headers).json()
        assert statement["agrees"] is True, statement
        # The charge line is the order's share of the one charge: a seller never sees what the others sold.
        [charge] = [line for line in statement["lines"] if line["kind"] == "charge"]
        total = http.get(f"/v1/orders/{order_id}", headers=buyer.headers).json()["total"]["amount"]
        sides = (charge["provider"]["amount"], charge["payment"]["amount"], charge["ledger"]["amount"])
        assert sides == (total, total, total), charge

    seen = http.get(f"/v1/checkouts/{body['id']}", headers=buyer.headers)
    assert seen.status_code == 200
    assert {o["status"] for o in seen.json()["orders"]} == {"completed", "cancelled"}
    stranger = register(http, ["buyer"], "Stranger")
    assert http.get(f"/v1/checkouts/{body['id']}", headers=stranger.headers).status_code == 404
    listed = http.get("/v1/checkouts", headers=buyer.headers).json()
    assert ([c["id"] for c in listed["items"]], listed["next_cursor"]) == ([body["id"]], None)
    assert http.get("/v1/checkouts", headers=stranger.headers).json()["items"] == []


def test_a_checkout_that_cannot_be_bought_as_seen_takes_nothing(http: httpx.Client, stack: Any) -> None:
    seller, other = seller_with_payout(http), seller_with_payout(http)
    lamp = published_listing(http, seller, price={"amount": 2_500, "currency": "EUR"}, quantity=2)
    chair = published_listing(http, other, price={"amount": 9_000, "currency": "EUR"})
    buyer = register(http, ["buyer"], "Late Buyer")
    empty = checkout(http, buyer)
    assert (empty.status_code, empty.json()["error"]["code"]) == (409, "cart_empty")

    put_line(http, buyer, lamp["id"], 2)
    put_line(http, buyer, chair["id"])
    changed = http.patch(
        f"/v1/listings/{chair['id']}",
        json={"price": {"amount": 9_500, "currency": "EUR"}},
        headers={**other.headers, "If-Match": "*"},
    )
    assert changed.status_code == 200, changed.text
    refused = checkout(http, buyer)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "cart_changed"
    assert error["details"]["lines"] == [
        {"listing_id": chair["id"], "problem": "price_changed", "available_quantity": 1}
    ]
    # Nothing was taken: the lamp's stock is whole, no payment was made, the cart is as it was.
    assert http.get(f"/v1/listings/{lamp['id']}").json()["quantity"] == 2
    assert len(http.get("/v1/cart", headers=buyer.headers).json()["lines"]) == 2

    # Set again (accepting the new price), it goes through.
    put_line(http, buyer, chair["id"])
    paid = checkout(http, buyer)
    assert (paid.status_code, paid.json()["status"]) == (201, "paid")
    assert paid.json()["total"]["amount"] == 2 * 2_500 + 9_500


def test_a_declined_card_cancels_every_order_and_gives_the_stock_back(http: httpx.Client, stack: Any) -> None:
    seller, other = seller_with_payout(http), seller_with_payout(http)
    lamp = published_listing(http, seller, quantity=1)
    chair = published_listing(http, other, quantity=1)
    buyer = register(http, ["buyer"], "Declined Buyer")
    put_line(http, buyer, lamp["id"])
    put_line(http, buyer, chair["id"])
    declined = checkout(http, buyer, pm="pm_card_chargeDeclined")
    assert declined.status_code == 201, declined.text
    body = declined.json()
    assert (body["status"], body["status_reason"]) == ("payment_failed", "payment_failed")
    assert {(o["status"], o["status_reason"]) for o in body["orders"]} == {("cancelled", "payment_failed")}
    for listing in (lamp, chair):
        again = http.get(f"/v1/listings/{listing['id']}").json()
        assert (again["status"], again["quantity"]) == ("active", 1)
    assert len(http.get("/v1/cart", headers=buyer.headers).json()["lines"]) == 2  # kept, to pay another way

    # The platform's integrations hear of the checkout; each order's seller, of their order's cancellation.
    staff = support_user(http, stack)
    key = http.post("/v1/api-keys", json={"name": "BI"}, headers=staff.headers)
    assert key.status_code == 201, key.text
    events = every_event(http, {"Authorization": f"Bearer {key.json()['key']}"})
    order_ids = {o["id"] for o in body["orders"]}
    assert [e["type"] for e in events if e["data"].get("id") == body["id"]] == ["checkout.payment_failed"]
    cancelled = [e for e in events if e["type"] == "order.cancelled" and e["data"].get("id") in order_ids]
    assert {e["data"]["id"] for e in cancelled} == order_ids


def test_twenty_buyers_racing_for_the_last_units_never_oversell_and_losers_pay_nothing(
    http: httpx.Client, stack: Any
) -> None:
    scarce_seller, plenty_seller = seller_with_payout(http), seller_with_payout(http)
    scarce = published_listing(http, scarce_seller, price={"amount": 3_000, "currency": "EUR"}, quantity=3)
    plenty = published_listing(http, plenty_seller, price={"amount": 1_000, "currency": "EUR"}, quantity=50)
    buyers = [register(http, ["buyer"], f"Racer {n}") for n in range(20)]
    for buyer in buyers:
        put_line(http, buyer, plenty["id"])
        put_line(http, buyer, scarce["id"])

    answers = at_once(http, checkout, buyers)
    won = [a for a in answers if a.status_code == 201]
    lost = [a for a in answers if a.status_code != 201]
    assert len(won) == 3, [a.status_code for a in answers]
    assert all(a.json()["status"] == "paid" for a in won)
    for answer in lost:
        error = answer.json()["error"]
        assert (answer.status_code, error["code"]) == (409, "cart_changed"), answer.text
        assert [line["problem"] for line in error["details"]["lines"]] == ["sold_out"]
    # No oversell: the scarce listing is sold out, and the other line was taken only by the winners.
    after = http.get(f"/v1/listings/{scarce['id']}", headers=scarce_seller.headers).json()
    assert (after["status"], after["quantity"]) == ("sold", 0)
    assert http.get(f"/v1/listings/{plenty['id']}").json()["quantity"] == 50 - 3
    # The losers were never charged: exactly the winners' PaymentIntents exist, and they keep their carts.
    winners = {a.json()["id"] for a in won}
    charged = {
        pi["metadata"]["checkout_id"]
        for pi in provider_list(stack, "/v1/payment_intents")
        if pi["metadata"].get("checkout_id")
    }
    buyers_checkouts = sql(
        stack,
        "SELECT id::text FROM checkouts WHERE buyer_id = ANY(%s)",
        [uuid.UUID(b.user_id) for b in buyers],
    )
    assert {row[0] for row in buyers_checkouts} == winners
    assert winners <= charged
    winning_buyers = {a.json()["buyer_id"] for a in won}
    for buyer in buyers:
        held = [line["listing_id"] for line in http.get("/v1/cart", headers=buyer.headers).json()["lines"]]
        assert len(held) == (0 if buyer.user_id in winning_buyers else 2), held


def test_a_seller_refunds_one_line_of_a_checkout_order_at_its_price(http: httpx.Client, stack: Any) -> None:
    seller = seller_with_payout(http)
    bike = published_listing(http, seller, price={"amount": 45_000, "currency": "EUR"})
    lamp = published_listing(http, seller, price={"amount": 2_500, "currency": "EUR"}, quantity=4)
    buyer = register(http, ["buyer"], "Line Buyer")
    put_line(http, buyer, bike["id"])
    put_line(http, buyer, lamp["id"], 2)
    paid = checkout(http, buyer)
    assert paid.status_code == 201, paid.text
    [order] = paid.json()["orders"]
    act(http, order["id"], "accept", seller)

    refunded = act(
        http,
        order["id"],
        "refund",
        seller,
        {"lines": [{"listing_id": lamp["id"], "quantity": 1}], "reason": "One lamp was cracked"},
    )
    assert (refunded["status"], refunded["refunded"]) == ("confirmed", {"amount": 2_500, "currency": "EUR"})
    (intent,) = intents_of_checkout(stack, paid.json()["id"])
    assert [r["amount"] for r in refunds_for(stack, intent["id"])] == [2_500]
    too_many = http.post(
        f"/v1/orders/{order['id']}/refund",
        json={"lines": [{"listing_id": lamp["id"], "quantity": 3}]},
        headers=seller.headers,
    )
    assert (too_many.status_code, too_many.json()["error"]["code"]) == (422, "validation_error")
    both = http.post(
        f"/v1/orders/{order['id']}/refund",
        json={"amount": 100, "lines": [{"listing_id": lamp["id"], "quantity": 1}]},
        headers=seller.headers,
    )
    assert both.status_code == 422
    assert_balanced(stack, order["id"])


def test_parallel_checkouts_of_one_cart_charge_the_buyer_once(http: httpx.Client, stack: Any) -> None:
    """Several checkouts of the same cart under different keys (a double click, two tabs): the buyer's
    reservations queue, the first one is paid and the others are refused while it runs (or find its lines gone
    from the cart once it is paid), so there is one charge and the stock is taken once."""
    seller, other = seller_with_payout(http), seller_with_payout(http)
    lamp = published_listing(http, seller, price={"amount": 6_000, "currency": "EUR"}, quantity=10)
    chair = published_listing(http, other, price={"amount": 2_500, "currency": "EUR"}, quantity=10)
    buyer = register(http, ["buyer"], "Double Clicker")
    put_line(http, buyer, lamp["id"])
    put_line(http, buyer, chair["id"])
    keys = [str(uuid.uuid4()) for _ in range(5)]

    answers = at_once(http, lambda own, key: checkout(own, buyer, key), keys)
    won = [a for a in answers if a.status_code == 201]
    assert len(won) == 1, [(a.status_code, a.text) for a in answers]
    body = won[0].json()
    assert (body["status"], body["total"]) == ("paid", {"amount": 8_500, "currency": "EUR"})
    for answer in answers:
        if answer is not won[0]:
            # Refused while the first was being paid, or after it took the lines out of the cart.
            assert answer.status_code == 409, answer.text
            assert answer.json()["error"]["code"] in ("checkout_in_progress", "cart_empty"), answer.text

    # One PaymentIntent among every key's checkout, one stored checkout, one order per seller, stock taken once.
    ids = {str(uuid.uuid5(CHECKOUT_ID_NAMESPACE, f"{buyer.user_id}:{key}")) for key in keys}
    intents = [
        pi for pi in provider_list(stack, "/v1/payment_intents") if pi["metadata"].get("checkout_id") in ids
    ]
    assert [(pi["metadata"]["checkout_id"], pi["amount"]) for pi in intents] == [(body["id"], 8_500)]
    stored = sql(
        stack, "SELECT id::text, status FROM checkouts WHERE buyer_id = %s", uuid.UUID(buyer.user_id)
    )
    assert stored == [(body["id"], "paid")]
    (orders,) = sql(stack, "SELECT count(*) FROM orders WHERE buyer_id = %s", uuid.UUID(buyer.user_id))
    assert orders == (2,)
    assert [http.get(f"/v1/listings/{x['id']}").json()["quantity"] for x in (lamp, chair)] == [9, 9]
    assert http.get("/v1/cart", headers=buyer.headers).json()["lines"] == []

    # The winner's key still replays its checkout; a new key finds nothing left to pay for.
    winner_key = keys[answers.index(won[0])]
    replay = checkout(http, buyer, winner_key)
    assert (replay.status_code, replay.json()["id"]) == (200, body["id"])
    again = checkout(http, buyer)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "cart_empty")


def test_a_checkout_is_refused_while_another_of_the_buyers_is_being_paid(
    http: httpx.Client, stack: Any
) -> None:
    """A pending checkout (its charge not settled) holds the buyer's next one: 409 `checkout_in_progress` naming
    it, nothing reserved or charged; once it is settled (here: declined) the cart can be paid again."""
    seller = seller_with_payout(http)
    lamp = published_listing(http, seller, price={"amount": 3_000, "currency": "EUR"}, quantity=5)
    buyer = register(http, ["buyer"], "Patient Buyer")
    put_line(http, buyer, lamp["id"], 2)
    declined = checkout(http, buyer, pm="pm_card_chargeDeclined")
    assert (declined.status_code, declined.json()["status"]) == (201, "payment_failed"), declined.text
    first_id = declined.json()["id"]
    # As if its charge were still running: the checkout is pending again (its stock held).
    sql(stack, "UPDATE checkouts SET status = 'pending' WHERE id = %s", uuid.UUID(first_id))
    try:
        key = str(uuid.uuid4())
        held = checkout(http, buyer, key)
        assert held.status_code == 409, held.text
        error = held.json()["error"]
        assert (error["code"], error["details"]) == ("checkout_in_progress", {"checkout_id": first_id})
        assert http.get(f"/v1/listings/{lamp['id']}").json()["quantity"] == 5
        refused_id = str(uuid.uuid5(CHECKOUT_ID_NAMESPACE, f"{buyer.user_id}:{key}"))
        assert intents_of_checkout(stack, refused_id) == []
        (count,) = sql(stack, "SELECT count(*) FROM checkouts WHERE buyer_id = %s", uuid.UUID(buyer.user_id))
        assert count == (1,)
    finally:
        sql(stack, "UPDATE checkouts SET status = 'payment_failed' WHERE id = %s", uuid.UUID(first_id))
    # Settled: the declined card left the lines in the cart, and the buyer pays another way.
    assert len(http.get("/v1/cart", headers=buyer.headers).json()["lines"]) == 1
    paid = checkout(http, buyer)
    assert (paid.status_code, paid.json()["status"]) == (201, "paid"), paid.text
    assert http.get(f"/v1/listings/{lamp['id']}").json()["quantity"] == 3


def test_a_replay_while_the_payment_runs_is_202_and_once_settled_200(http: httpx.Client, stack: Any) -> None:
    """Found from outside: a retry under the checkout's key while its payment ran answered 200 with a pending
    checkout, where the documented answer is 202 (200 is a replay of a settled checkout)."""
    seller = seller_with_payout(http)
    lamp = published_listing(http, seller, price={"amount": 3_000, "currency": "EUR"}, quantity=5)
    buyer = register(http, ["buyer"], "Retrying Buyer")
    put_line(http, buyer, lamp["id"])
    key = str(uuid.uuid4())
    paid = checkout(http, buyer, key)
    assert (paid.status_code, paid.json()["status"]) == (201, "paid"), paid.text
    checkout_id = uuid.UUID(paid.json()["id"])
    # As if its charge were still running (the first answer's wait ran out): the checkout is pending.
    sql(stack, "UPDATE checkouts SET status = 'pending' WHERE id = %s", checkout_id)
    try:
        running = checkout(http, buyer, key)
        assert (running.status_code, running.json()["status"]) == (202, "pending"), running.text
        assert running.headers["Location"] == f"/v1/checkouts/{checkout_id}"
    finally:
        sql(stack, "UPDATE checkouts SET status = 'paid' WHERE id = %s", checkout_id)
    settled = checkout(http, buyer, key)
    assert (settled.status_code, settled.json()["status"]) == (200, "paid"), settled.text


def test_a_checkouts_orders_show_what_was_refunded_of_them(http: httpx.Client, stack: Any) -> None:
    """The checkout's order summaries say what was refunded of each order, as the order itself does."""
    declining, refunding = seller_with_payout(http), seller_with_payout(http)
    lamp = published_listing(http, declining, price={"amount": 2_500, "currency": "EUR"})
    bike = published_listing(http, refunding, price={"amount": 45_000, "currency": "EUR"})
    buyer = register(http, ["buyer"], "Refunded Buyer")
    put_line(http, buyer, lamp["id"])
    put_line(http, buyer, bike["id"])
    paid = checkout(http, buyer)
    assert (paid.status_code, paid.json()["status"]) == (201, "paid"), paid.text
    orders = {order["seller_id"]: order["id"] for order in paid.json()["orders"]}
    act(http, orders[declining.user_id], "decline", declining)
    act(http, orders[refunding.user_id], "accept", refunding)
    act(http, orders[refunding.user_id], "refund", refunding, {"amount": 1_500, "reason": "Scratched frame"})

    expected = {
        orders[declining.user_id]: {"amount": 2_500, "currency": "EUR"},
        orders[refunding.user_id]: {"amount": 1_500, "currency": "EUR"},
    }
    for order_id, refunded in expected.items():
        assert http.get(f"/v1/orders/{order_id}", headers=buyer.headers).json()["refunded"] == refunded
    seen = http.get(f"/v1/checkouts/{paid.json()['id']}", headers=buyer.headers)
    assert seen.status_code == 200, seen.text
    assert {o["id"]: o["refunded"] for o in seen.json()["orders"]} == expected
    (listed,) = http.get("/v1/checkouts", headers=buyer.headers).json()["items"]
    assert {o["id"]: o["refunded"] for o in listed["orders"]} == expected


def test_racing_checkouts_under_one_key_with_other_cards_are_refused_not_told_they_paid(
    http: httpx.Client, stack: Any
) -> None:
    seller = seller_with_payout(http)
    lamp = published_listing(http, seller, price={"amount": 6_000, "currency": "EUR"}, quantity=10)
    buyer = register(http, ["buyer"], "Two Cards")
    put_line(http, buyer, lamp["id"])
    key = str(uuid.uuid4())
    cards = ["pm_card_visa", "pm_card_chargeDeclined", "pm_card_visa", "pm_card_chargeDeclined"]

    answers = at_once(http, lambda own, card: (card, checkout(own, buyer, key, card)), cards)
    answered = [(card, r.json()) for card, r in answers if r.status_code in (200, 201)]
    assert len({body["id"] for _, body in answered}) == 1, [(c, r.status_code, r.text) for c, r in answers]
    first_card = {card for card, _ in answered}
    assert len(first_card) == 1, (
        answered
    )  # only requests with the card that won are answered with its checkout
    for card, response in answers:
        if card not in first_card:
            assert (response.status_code, response.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert len(intents_of_checkout(stack, answered[0][1]["id"])) == 1


def test_a_checkouts_orders_page_one_by_one_though_placed_in_one_transaction(http: httpx.Client) -> None:
    """The orders of one checkout share their creation time: the buyer's orders list still pages through each
    (the cursor orders by time, then id)."""
    buyer = register(http, ["buyer"], "Pager")
    for _ in range(3):
        seller = seller_with_payout(http)
        put_line(
            http, buyer, published_listing(http, seller, price={"amount": 1_000, "currency": "EUR"})["id"]
        )
    paid = checkout(http, buyer)
    assert paid.status_code == 201, paid.text
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1, **({"before": cursor} if cursor else {})}
        page = http.get("/v1/orders", params=params, headers=buyer.headers).json()
        seen += [order["id"] for order in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(order["id"] for order in paid.json()["orders"]), seen


def test_a_chargeback_of_a_checkouts_charge_freezes_each_order_with_its_share(
    http: httpx.Client, stack: Any
) -> None:
    """Found from outside: a dispute on a checkout's one charge reached no order (the charge names the checkout),
    so its orders went on as paid, the sellers could not cancel or refund (the provider refuses a refund on a
    disputed charge), and a seller who shipped was paid out after the buyer had the money back. Each order now
    bears its share (in proportion to what it holds), is frozen, booked and decided as its own chargeback."""
    since = next_second()
    sellers = [seller_with_payout(http) for _ in range(2)]
    listings = [
        published_listing(http, seller, price={"amount": price, "currency": "EUR"})
        for seller, price in zip(sellers, (10_000, 5_000), strict=True)
    ]
    buyer = register(http, ["buyer"], "Disputing Buyer")
    for listing in listings:
        put_line(http, buyer, listing["id"])
    paid = checkout(http, buyer)
    assert paid.status_code == 201, paid.text
    orders = {order["seller_id"]: order["id"] for order in paid.json()["orders"]}
    (intent,) = intents_of_checkout(stack, paid.json()["id"])
    dispute = httpx.post(
        f"{stack.stripe_api_base}/_sandbox/disputes", json={"payment_intent": intent["id"]}, timeout=10
    ).json()
    for seller, amount in zip(sellers, (10_000, 5_000), strict=True):
        order_id = orders[seller.user_id]
        frozen = order_until(http, order_id, buyer, "disputed")
        assert (frozen["status_reason"], frozen["payment_state"]) == ("chargeback", "chargeback")
        refused = http.post(f"/v1/orders/{order_id}/accept", headers=seller.headers)
        assert refused.status_code == 409, refused.text  # nothing ships, nobody is paid meanwhile
        assert ledger_accounts(stack, order_id)["chargebacks"] == amount
    httpx.post(
        f"{stack.stripe_api_base}/_sandbox/disputes/{dispute['id']}/close",
        json={"status": "lost"},
        timeout=10,
    )
    for seller, listing in zip(sellers, listings, strict=True):
        order_id = orders[seller.user_id]
        ended = order_until(http, order_id, buyer, "refunded")
        assert (ended["status_reason"], ended["payment_state"]) == ("chargeback_lost", "charged_back")
        assert (
            http.get(f"/v1/listings/{listing['id']}").json()["quantity"] == 1
        )  # never shipped: back on sale
        assert transfers_for(stack, order_id) == []
        statement = http.get(f"/v1/orders/{order_id}/money", headers=seller.headers).json()
        assert statement["agrees"] is True, statement
        [charged_back] = [line for line in statement["lines"] if line["kind"] == "chargeback"]
        assert (
            charged_back["provider"]["amount"] == charged_back["ledger"]["amount"] == ended["total"]["amount"]
        )
    assert_balanced(stack, *orders.values())
    summary = reconcile(stack, since, next_second())
    assert [
        d for d in summary.discrepancies if dispute["id"] == d.object_id or d.order_id in orders.values()
    ] == []
