"""Refunds by the seller or support while the money is in escrow (`POST /v1/orders/{id}/refund`), on the real
stack: the provider's refund, the ledger, the fee on what the buyer still pays, the buyer told, and the limits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bazaar.orders.terms import DEFAULT_TERMS
from bazaar.payments.money import platform_fee
from tests.support.http import (
    Actor,
    at_once,
    published_listing,
    register,
    seller_with_payout,
    support_user,
    wait_until,
)
from tests.support.money import (
    act,
    act_then_paid_out,
    assert_balanced,
    ledger_accounts,
    paid_order,
    payment_intents_for,
    provider_list,
    refunds_for,
    refused,
    transfers_for,
    units_order,
)

pytestmark = pytest.mark.integration

PRICE = 45_000


def intent_of(stack: Any, order_id: str) -> str:
    (intent,) = payment_intents_for(stack, order_id)
    return str(intent["id"])


def test_a_partial_refund_keeps_the_order_and_the_release_pays_the_rest(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    act(http, order["id"], "accept", seller)
    refunded = act(http, order["id"], "refund", seller, {"amount": 1500, "reason": "Scratch on the frame"})
    assert (refunded["status"], refunded["refunded"]) == ("confirmed", {"amount": 1500, "currency": "EUR"})
    assert refunded["payment_state"] == "held_in_escrow"
    assert "refund" in refunded["allowed_actions"]
    assert [r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))] == [1500]

    act(http, order["id"], "fulfil", seller)
    done = act_then_paid_out(http, order["id"], "confirm-receipt", buyer)
    # The fee is charged on what the buyer still pays (PLATFORM_FEE_REFUNDED_PRO_RATA, default true).
    fee = platform_fee(PRICE - 1500, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"])
    assert (done["status"], done["payment_state"]) == ("completed", "released")
    assert [t["amount"] for t in transfers_for(stack, order["id"])] == [PRICE - 1500 - fee]
    assert_balanced(stack, order["id"])
    accounts = ledger_accounts(stack, order["id"])
    assert accounts.get("refunds") == 1500 and accounts.get("platform_fees") == fee, accounts

    inbox = wait_until(
        lambda: [
            n
            for n in http.get("/v1/notifications", headers=buyer.headers).json()["items"]
            if n["event_type"] == "order_refunded"
        ],
        timeout=10,
    )
    assert "15.00 EUR" in inbox[0]["body"], inbox[0]


def test_refunding_everything_ends_the_order_and_gives_the_stock_back(http: httpx.Client, stack: Any) -> None:
    seller, _, order = paid_order(http, quantity=1)
    staff = support_user(http, stack)
    first = act(http, order["id"], "refund", staff, {"amount": 10_000})
    assert first["status"] == "paid"
    whole = act(http, order["id"], "refund", seller, {"amount": PRICE - 10_000})
    assert (whole["status"], whole["payment_state"]) == ("refunded", "refunded")
    assert whole["refunded"] == {"amount": PRICE, "currency": "EUR"}
    listing = http.get(f"/v1/listings/{order['listing_id']}").json()
    assert (listing["quantity"], listing["status"]) == (1, "active")
    assert sorted(r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))) == [
        10_000,
        PRICE - 10_000,
    ]
    assert_balanced(stack, order["id"])
    again = refused(http, order["id"], "refund", seller, {"amount": 1})
    assert again.status_code == 409, again.text


def test_a_refund_above_what_is_held_or_by_the_buyer_is_refused_and_moves_nothing(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    too_much = refused(http, order["id"], "refund", seller, {"amount": PRICE + 1})
    assert too_much.status_code == 422, too_much.text
    assert too_much.json()["error"]["code"] == "validation_error"
    # It names the body's field, as every 422 validation_error does, and still carries the order as it stands.
    [problem] = too_much.json()["error"]["details"]["errors"]
    assert problem["loc"] == ["body", "amount"] and str(PRICE) in problem["msg"], problem
    assert too_much.json()["error"]["details"]["order"]["status"] == "paid"
    by_buyer = refused(http, order["id"], "refund", buyer, {"amount": 100})
    assert by_buyer.status_code == 403, by_buyer.text
    for bad in (
        {"amount": 0},
        {"amount": -5},
        {"amount": "12.50"},
        {"amount": 100, "reason": "a\u0000b"},
        {},
    ):
        answered = refused(http, order["id"], "refund", seller, bad)
        assert answered.status_code == 422, (bad, answered.text)
    current = http.get(f"/v1/orders/{order['id']}", headers=seller.headers).json()
    assert current["status"] == "paid"
    assert refunds_for(stack, intent_of(stack, order["id"])) == []


def test_support_refunds_after_the_release_taking_the_share_back_from_the_seller(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = paid_order(http)
    staff = support_user(http, stack)
    act(http, order["id"], "accept", seller)
    act(http, order["id"], "fulfil", seller)
    act_then_paid_out(http, order["id"], "confirm-receipt", buyer)  # released: the order's run has ended
    fee = platform_fee(PRICE, DEFAULT_TERMS["fee_bps"], DEFAULT_TERMS["fee_fixed"])
    [transfer] = transfers_for(stack, order["id"])
    assert transfer["amount"] == PRICE - fee
    assert refused(http, order["id"], "refund", seller, {"amount": 1_000}).status_code == 409  # support only

    # A reopened run refunds 10,000: the fee comes back pro rata, the rest from the seller's transfer.
    first = act(http, order["id"], "refund", staff, {"amount": 10_000, "reason": "Returned the saddle"})
    assert (first["status"], first["payment_state"]) == ("completed", "released")
    fee_back = fee * 10_000 // PRICE
    reversals = provider_list(stack, f"/v1/transfers/{transfer['id']}/reversals")
    assert [r["amount"] for r in reversals] == [10_000 - fee_back]
    assert ledger_accounts(stack, order["id"]).get("platform_fees") == fee - fee_back
    assert_balanced(stack, order["id"])

    # Another run (the state loaded again, part of the release already taken back) refunds the rest.
    rest = PRICE - 10_000
    whole = act(http, order["id"], "refund", staff, {"amount": rest})
    assert (whole["status"], whole["payment_state"]) == ("refunded", "refunded")
    reversed_total = sum(
        r["amount"] for r in provider_list(stack, f"/v1/transfers/{transfer['id']}/reversals")
    )
    assert reversed_total == transfer["amount"]  # the seller keeps nothing
    accounts = ledger_accounts(stack, order["id"])
    assert accounts.get("refunds") == PRICE and "platform_fees" not in accounts, accounts
    assert sorted(r["amount"] for r in refunds_for(stack, intent_of(stack, order["id"]))) == [10_000, rest]
    assert_balanced(stack, order["id"])


def order_of_units(http: httpx.Client, units: int, price: int) -> tuple[Actor, Actor, dict[str, Any]]:
    """A paid order for `units` of one listing (one line), accepted by its seller."""
    seller = seller_with_payout(http)
    item = published_listing(http, seller, price={"amount": price, "currency": "EUR"}, quantity=10)
    buyer = register(http, ["buyer"], "Line Buyer")
    return seller, buyer, units_order(http, seller, buyer, item["id"], units, to=("accept",))


def by_lines(listing_id: str, quantity: int) -> dict[str, Any]:
    return {"lines": [{"listing_id": listing_id, "quantity": quantity}]}


def test_a_line_is_refunded_by_lines_at_most_as_many_units_as_were_bought(
    http: httpx.Client, stack: Any
) -> None:
    seller, _, order = order_of_units(http, 3, 2_500)
    oid, listing = order["id"], order["listing_id"]
    two = act(http, oid, "refund", seller, by_lines(listing, 2))
    assert two["refunded"] == {"amount": 5_000, "currency": "EUR"}
    assert [line["refunded_quantity"] for line in two["lines"]] == [2]
    # Two of three are refunded: two more are refused, whatever the money still held would allow.
    more = refused(http, oid, "refund", seller, by_lines(listing, 2))
    assert (more.status_code, more.json()["error"]["code"]) == (422, "validation_error")
    assert "1 of it can be refunded" in more.json()["error"]["message"]
    last = act(http, oid, "refund", seller, by_lines(listing, 1))
    assert (last["status"], last["refunded"]) == ("refunded", {"amount": 7_500, "currency": "EUR"})
    assert sorted(r["amount"] for r in refunds_for(stack, intent_of(stack, oid))) == [2_500, 5_000]
    stored = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert [line["refunded_quantity"] for line in stored["lines"]] == [3]
    assert_balanced(stack, oid)


def test_a_refund_names_each_line_once_and_nothing_else(http: httpx.Client, stack: Any) -> None:
    seller, _, order = order_of_units(http, 2, 2_500)
    oid, listing = order["id"], order["listing_id"]
    twice = {"lines": [{"listing_id": listing, "quantity": 1}, {"listing_id": listing, "quantity": 1}]}
    repeated = refused(http, oid, "refund", seller, twice)
    assert (repeated.status_code, repeated.json()["error"]["code"]) == (422, "validation_error")
    extra = refused(
        http, oid, "refund", seller, {"lines": [{"listing_id": listing, "quantity": 1, "junk": 1}]}
    )
    assert extra.status_code == 422
    assert refunds_for(stack, intent_of(stack, oid)) == []
    # Lines worth more than the order still holds: the refusal speaks of the lines, not of a field never sent.
    act(http, oid, "refund", seller, {"amount": 3_000})
    beyond = refused(http, oid, "refund", seller, by_lines(listing, 1))
    assert beyond.status_code == 422 and "these lines are worth 2500" in beyond.json()["error"]["message"]


def test_parallel_refunds_of_one_line_refund_each_unit_once(http: httpx.Client, stack: Any) -> None:
    seller, _, order = order_of_units(http, 2, 2_500)
    oid, listing = order["id"], order["listing_id"]

    def one(client: httpx.Client, _: int) -> int:
        answer = client.post(
            f"/v1/orders/{oid}/refund",
            json=by_lines(listing, 1),
            headers={**seller.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        return answer.status_code

    statuses = sorted(at_once(http, one, range(5)))
    assert statuses.count(200) == 2 and all(s in (409, 422) for s in statuses if s != 200), statuses
    assert [r["amount"] for r in refunds_for(stack, intent_of(stack, oid))] == [2_500, 2_500]
    stored = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert (stored["status"], [line["refunded_quantity"] for line in stored["lines"]]) == ("refunded", [2])
    assert_balanced(stack, oid)


def test_an_action_key_used_again_with_another_request_is_refused(http: httpx.Client, stack: Any) -> None:
    seller, _, order = order_of_units(http, 1, PRICE)
    oid = order["id"]

    def refund(key: str, body: dict[str, Any]) -> httpx.Response:
        return http.post(
            f"/v1/orders/{oid}/refund", json=body, headers={**seller.headers, "Idempotency-Key": key}
        )

    first = refund("refund-k", {"amount": 500})
    assert (first.status_code, first.json()["refunded"]["amount"]) == (200, 500), first.text
    again = refund("refund-k", {"amount": 500})  # a retry: the first answer, nothing refunded twice
    assert (again.status_code, again.json()["refunded"]["amount"]) == (200, 500), again.text
    other = refund("refund-k", {"amount": 1_500})
    assert (other.status_code, other.json()["error"]["code"]) == (422, "idempotency_key_reused"), other.text
    assert [r["amount"] for r in refunds_for(stack, intent_of(stack, oid))] == [500]

    def fulfil(body: dict[str, Any]) -> httpx.Response:
        return http.post(
            f"/v1/orders/{oid}/fulfil", json=body, headers={**seller.headers, "Idempotency-Key": "ship"}
        )

    shipped = fulfil({"carrier": "DHL", "tracking_number": "A1"})
    assert shipped.status_code == 200, shipped.text
    reshipped = fulfil({"carrier": "UPS", "tracking_number": "B2"})
    assert (reshipped.status_code, reshipped.json()["error"]["code"]) == (422, "idempotency_key_reused")
    stored = http.get(f"/v1/orders/{oid}", headers=seller.headers).json()
    assert stored["tracking"]["tracking_number"] == "A1", stored


def test_an_action_key_names_one_request_of_the_order_whatever_the_action(
    http: httpx.Client, stack: Any
) -> None:
    seller, buyer, order = order_of_units(http, 1, PRICE)  # accepted
    oid = order["id"]
    tracking = {"carrier": "DHL", "tracking_number": "A1"}

    def send(action: str, actor: Any, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return http.post(
            f"/v1/orders/{oid}/{action}", json=body, headers={**actor.headers, "Idempotency-Key": key}
        )

    shipped = send("fulfil", seller, "k1", tracking)
    assert shipped.status_code == 200 and shipped.json()["status"] == "fulfilled", shipped.text
    refund_under_fulfils_key = send("refund", seller, "k1", {"amount": 500})
    assert (refund_under_fulfils_key.status_code, refund_under_fulfils_key.json()["error"]["code"]) == (
        422,
        "idempotency_key_reused",
    ), refund_under_fulfils_key.text
    assert refunds_for(stack, intent_of(stack, oid)) == []
    assert send("fulfil", seller, "k1", tracking).status_code == 200  # the fulfil's own retry still joins it
    # Keys are the caller's: the buyer's own "k1" is a request of its own.
    completed = send("confirm-receipt", buyer, "k1")
    assert completed.status_code == 200 and completed.json()["status"] == "completed", completed.text


def test_units_refunded_by_line_before_shipping_go_back_on_sale_once(http: httpx.Client, stack: Any) -> None:
    """Found from outside: a unit refunded by line before the order shipped stayed off sale for good (only a
    refund of everything gave stock back). It goes back at once; the order's end gives back only the rest."""
    seller, _, order = order_of_units(http, 3, 2_500)  # 10 listed, 3 ordered: 7 on sale
    oid, listing = order["id"], order["listing_id"]

    def on_sale() -> int:
        return int(http.get(f"/v1/listings/{listing}").json()["quantity"])

    assert on_sale() == 7
    act(http, oid, "refund", seller, by_lines(listing, 1))
    assert on_sale() == 8
    act(http, oid, "cancel", seller)  # the order ends unshipped: the two units it still held come back
    assert on_sale() == 10
    # Shipped, a unit refunded by line stays with the buyer: nothing comes back.
    seller, _, shipped = order_of_units(http, 2, 2_500)
    act(http, shipped["id"], "fulfil", seller)
    listing = shipped["listing_id"]
    act(http, shipped["id"], "refund", seller, by_lines(listing, 1))
    assert on_sale() == 8
    assert_balanced(stack, oid, shipped["id"])
