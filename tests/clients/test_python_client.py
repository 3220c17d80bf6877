"""A Python client generated from the live `/openapi.json` with openapi-python-client (pinned in pyproject.toml)
drives a whole order with its generated functions and models only, unedited: registration, login, payout
account, a listing created, changed with If-Match and published, an order placed with an Idempotency-Key,
accepted, fulfilled and confirmed. A 409 and 422s come back parsed into the typed error models, so a contract
change that breaks generated clients fails here (docs/api.md)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.support.http import PASSWORD

pytestmark = pytest.mark.integration

PACKAGE = "bazaar_generated_client"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
# No post hooks: the generated code is imported as generated (its formatting is not our concern).
CONFIG = f"project_name_override: bazaar-generated-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n"


def _snake(operation_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package, generated into a temp dir and importable while the module's tests run."""
    work = tmp_path_factory.mktemp("python-client")
    doc = httpx.get(f"{stack.api_url}/openapi.json", timeout=30)
    assert doc.status_code == 200, doc.text
    (work / "openapi.json").write_bytes(doc.content)
    (work / "config.yaml").write_text(CONFIG)
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(work / "openapi.json"),
            "--output-path",
            str(work / PACKAGE),
            "--config",
            str(work / "config.yaml"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # The generator reports what it could not read ("Endpoint will not be generated") as warnings.
    assert "warning" not in output.lower(), output
    generated_ops = {path.stem for path in (work / PACKAGE / "api").glob("*/*.py") if path.stem != "__init__"}
    document_ops = {
        _snake(operation["operationId"])
        for path in doc.json()["paths"].values()
        for operation in path.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert document_ops - generated_ops == set(), "operations the generator dropped"
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


class Api:
    """The generated package's operations (`api.orders.place_order`) and models, by name."""

    def __init__(self, package: ModuleType) -> None:
        self.client = importlib.import_module(f"{PACKAGE}.client")
        self.m = importlib.import_module(f"{PACKAGE}.models")
        self.types = importlib.import_module(f"{PACKAGE}.types")

    def op(self, tag: str, name: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{name}")


def _account(api: Api, base_url: str, *roles: str) -> tuple[Any, Any]:
    """Register (202, no account in the answer), log in with the password form, read the id from /users/me."""
    m = api.m
    anonymous = api.client.Client(
        base_url=base_url, timeout=httpx.Timeout(30), raise_on_unexpected_status=True
    )
    email = f"gen-py-{roles[0]}-{uuid.uuid4().hex[:10]}@example.com"
    registered = api.op("auth", "register").sync_detailed(
        client=anonymous,
        body=m.RegisterIn(
            email=email,
            password=PASSWORD,
            display_name=f"Py {roles[0]}",
            roles=[m.SignupRole(role) for role in roles],
        ),
    )
    assert registered.status_code == 202, registered.content
    assert isinstance(registered.parsed, m.Accepted)
    tokens = api.op("auth", "token").sync(
        client=anonymous, body=m.TokenForm(username=email, password=PASSWORD)
    )
    assert isinstance(tokens, m.TokenPairOut), tokens
    client = api.client.AuthenticatedClient(
        base_url=base_url,
        token=tokens.access_token,
        timeout=httpx.Timeout(30),
        raise_on_unexpected_status=True,
    )
    me = api.op("auth", "me").sync(client=client)
    assert isinstance(me, m.AccountOut), me
    assert (me.email, sorted(str(role) for role in me.roles)) == (email, sorted(roles))
    return client, me


def _order_answer(api: Api, response: Any, buyer: Any) -> Any:
    """An order from a 200/201, or polled until it moves when the workflow answered 202 (docs/api.md)."""
    assert response.status_code in (200, 201, 202), response.content
    order = response.parsed
    assert isinstance(order, api.m.OrderOut), order
    get_order = api.op("orders", "get_order")
    for _ in range(100):
        if order.status != api.m.OrderStatus.PENDING:
            return order
        detail = get_order.sync(order.id, client=buyer)
        assert isinstance(detail, api.m.OrderDetailOut), detail
        order = detail
    raise AssertionError(f"order {order.id} still pending")


def test_generated_python_client_drives_a_whole_order(generated: ModuleType, stack: Stack) -> None:
    api = Api(generated)
    m = api.m
    seller, seller_me = _account(api, stack.api_url, "seller", "buyer")  # a buyer too: own_listing below
    buyer, buyer_me = _account(api, stack.api_url, "buyer")

    payout = api.op("payouts", "create_payout_account").sync_detailed(
        client=seller,
        body=m.PayoutAccountIn(country="DE", default_currency=m.Currency.EUR),
    )
    assert payout.status_code == 201, payout.content
    assert payout.parsed.provider_account_id.startswith("acct_")

    # 422 validation_error: the body is parsed into the typed ValidationErrorOut, fields and all.
    listing_in = m.ListingIn(
        title=f"Generated-client bike {uuid.uuid4().hex[:6]}",
        description="Steel frame",
        price=m.Price(amount=0, currency=m.Currency.EUR),
        category="bikes",
        condition=m.ListingCondition.GOOD,
        quantity=2,
        location=m.Location(lat=52.52, lng=13.405, city="Berlin", country="DE"),
    )
    create_listing = api.op("listings", "create_listing")
    invalid = create_listing.sync_detailed(client=seller, body=listing_in)
    assert invalid.status_code == 422, invalid.content
    assert isinstance(invalid.parsed, m.ValidationErrorOut), invalid.parsed
    assert invalid.parsed.error.code == m.ErrorCode.VALIDATION_ERROR
    assert "price.amount" in invalid.parsed.error.message
    [field] = invalid.parsed.error.details.errors
    assert isinstance(field, m.FieldError)
    assert (field.loc, field.type_) == (["body", "price", "amount"], "greater_than")

    listing_in.price = m.Price(amount=45_000, currency=m.Currency.EUR)
    created = create_listing.sync_detailed(client=seller, body=listing_in)
    assert created.status_code == 201, created.content
    listing = created.parsed
    assert isinstance(listing, m.ListingOut)
    assert (listing.status, listing.seller_id) == (m.ListingStatus.DRAFT, seller_me.id)

    updated = api.op("listings", "update_listing").sync_detailed(
        listing.id,
        client=seller,
        body=m.ListingPatch(description="Steel frame, new tyres"),
        if_match=created.headers["ETag"],
    )
    assert updated.status_code == 200, updated.content
    assert updated.parsed.description == "Steel frame, new tyres"
    published = api.op("listings", "publish_listing").sync_detailed(
        listing.id, client=seller, if_match=updated.headers["ETag"]
    )
    assert published.status_code == 200, published.content
    assert published.parsed.status == m.ListingStatus.ACTIVE

    placed = api.op("orders", "place_order").sync_detailed(
        client=buyer,
        body=m.OrderIn(listing_id=listing.id, payment_method="pm_card_visa"),
        idempotency_key=f"gen-py-{uuid.uuid4()}",
    )
    order = _order_answer(api, placed, buyer)
    assert (order.status, order.buyer_id, order.seller_id) == (m.OrderStatus.PAID, buyer_me.id, seller_me.id)
    assert (order.total.amount, order.total.currency) == (45_000, "EUR")

    # 409 invalid_transition: shipping before accepting; the error carries the current order.
    early = api.op("orders", "fulfil_order").sync_detailed(
        order.id, client=seller, body=m.FulfilIn(carrier="DHL", tracking_number="JD014600003SE")
    )
    assert early.status_code == 409, early.content
    assert isinstance(early.parsed, m.ErrorOut), early.parsed
    assert early.parsed.error.code == m.ErrorCode.INVALID_TRANSITION
    assert early.parsed.error.message
    assert early.parsed.error.details.additional_properties["order"]["status"] == "paid"

    accepted = api.op("orders", "accept_order").sync(order.id, client=seller)
    assert accepted.status == m.OrderStatus.CONFIRMED, accepted
    fulfilled = api.op("orders", "fulfil_order").sync(
        order.id, client=seller, body=m.FulfilIn(carrier="DHL", tracking_number="JD014600003SE")
    )
    assert fulfilled.status == m.OrderStatus.FULFILLED, fulfilled
    # Typed fields (the document's Tracking), only those given.
    tracking = fulfilled.tracking
    assert (tracking.carrier, tracking.tracking_number) == ("DHL", "JD014600003SE"), tracking
    assert tracking.tracking_url is api.types.UNSET, tracking
    completed = api.op("orders", "confirm_receipt").sync(order.id, client=buyer)
    assert completed.status == m.OrderStatus.COMPLETED, completed

    final = api.op("orders", "get_order").sync(order.id, client=seller)
    assert isinstance(final, m.OrderDetailOut), final
    assert (final.status, final.status_reason, final.payment_state) == (
        m.OrderStatus.COMPLETED,
        "buyer_confirmed",
        m.PaymentState.RELEASED,
    )
    assert final.allowed_actions == completed.allowed_actions == []  # only support may refund after release
    assert [str(event.action) for event in final.timeline] == [
        "order.placed",
        "order.paid",
        "order.accepted",
        "order.fulfilled",
        "order.completed",
    ]

    # 422 from the domain (buying one's own listing): the same typed model, without field errors.
    own = api.op("orders", "place_order").sync_detailed(
        client=seller,
        body=m.OrderIn(listing_id=listing.id, payment_method="pm_card_visa"),
        idempotency_key=f"gen-py-{uuid.uuid4()}",
    )
    assert own.status_code == 422, own.content
    assert isinstance(own.parsed, m.ValidationErrorOut), own.parsed
    assert (own.parsed.error.code, own.parsed.error.message) == (
        m.ErrorCode.OWN_LISTING,
        "you cannot buy your own listing",
    )
    assert own.parsed.error.details.errors in (api.types.UNSET, [])
