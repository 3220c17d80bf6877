"""The OpenAPI document as api/openapi.py builds it, checked in process: its schemas speak JSON Schema, so
validators and client generators read every bound the API enforces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest

from api.app import app, create_app
from bazaar.settings import get_settings

# Pydantic's names for bounds: a constraint pydantic cannot express on a schema lands in it under these, which
# no JSON Schema validator or client generator reads (the bound silently vanishes from the contract).
PYDANTIC_ONLY_KEYWORDS = frozenset({"ge", "gt", "le", "lt", "min_length", "max_length", "multiple_of"})


def _schema_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("properties", "example", "examples", "default"):
                yield from _schema_nodes(value)
            elif key == "properties":
                for prop in value.values():
                    yield from _schema_nodes(prop)
    elif isinstance(node, list):
        for item in node:
            yield from _schema_nodes(item)


def test_every_bound_is_in_json_schema_keywords() -> None:
    schemas = app.openapi()["components"]["schemas"]
    misnamed = [
        (name, sorted(PYDANTIC_ONLY_KEYWORDS & node.keys()))
        for name, schema in schemas.items()
        for node in _schema_nodes(schema)
        if PYDANTIC_ONLY_KEYWORDS & node.keys()
    ]
    assert not misnamed, misnamed
    # A length bound on an array or object is maxItems/maxProperties: maxLength there bounds nothing.
    lengths_on_collections = [
        name
        for name, schema in schemas.items()
        for node in _schema_nodes(schema)
        if node.get("type") in ("array", "object") and {"minLength", "maxLength"} & node.keys()
    ]
    assert not lengths_on_collections, lengths_on_collections
    bounded = schemas["ListingPatch"]["properties"]["quantity"]
    assert (bounded["minimum"], bounded["maximum"]) == (0, 10_000), bounded


def test_every_answer_declares_the_headers_it_always_carries() -> None:
    """X-Trace-Id on every response of every operation (required: api.telemetry sends it on each), and the
    RateLimit fields on every response of a rate-limited one (api.security sends them, not just with a 429)."""
    missing = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            limited = "429" in operation["responses"]
            for status, response in operation["responses"].items():
                headers = response.get("headers", {})
                if not headers.get("X-Trace-Id", {}).get("required"):
                    missing.append(f"{method.upper()} {path} {status}: X-Trace-Id")
                if limited and not {"RateLimit", "RateLimit-Policy"} <= headers.keys():
                    missing.append(f"{method.upper()} {path} {status}: RateLimit")
    assert not missing, missing


def test_every_answer_with_tokens_declares_that_it_is_not_to_be_cached() -> None:
    """Found from outside: the password change answers a token pair with `Pragma: no-cache` (RFC 6749 5.1) as
    the token endpoint does, but did not declare the header."""
    doc = app.openapi()
    token_pair = {"$ref": "#/components/schemas/TokenPairOut"}
    answering = [
        (path, method, answer)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        for answer in operation.get("responses", {}).values()
        if answer.get("content", {}).get("application/json", {}).get("schema") == token_pair
    ]
    assert len(answering) >= 3, answering  # token, refresh, password
    for path, method, answer in answering:
        assert {"Pragma", "Cache-Control"} <= set(answer.get("headers", {})), (path, method)


def test_an_answer_without_content_sends_no_content_type() -> None:
    """Found from outside: logout, the email check, the reset's confirmation and two deletes answered 204 with
    `Content-Type: application/json` and no body. Every 204 route answers with a bare `Response`."""
    from fastapi.routing import APIRoute
    from starlette.responses import Response

    def routes(of: list[Any]) -> Iterator[APIRoute]:
        for route in of:
            if isinstance(route, APIRoute):
                yield route
            elif (included := getattr(route, "original_router", None)) is not None:  # an included router
                yield from routes(included.routes)

    no_content = [r for r in routes(app.routes) if r.status_code == 204]
    assert len(no_content) >= 6, [r.path for r in no_content]
    for route in no_content:
        assert route.response_class is Response, route.path


def test_a_lines_quantity_has_one_bound_wherever_it_is_asked_for() -> None:
    """Found from outside: a cart line took at most 99 units, an order 100."""
    schemas = app.openapi()["components"]["schemas"]
    bounds = {
        model: (
            schemas[model]["properties"]["quantity"]["minimum"],
            schemas[model]["properties"]["quantity"]["maximum"],
        )
        for model in ("OrderIn", "CartLineIn", "RefundLineIn", "ReturnLineIn")
    }
    assert set(bounds.values()) == {(1, 100)}, bounds


def test_a_pages_cursor_has_the_type_of_the_parameter_it_is_passed_back_as() -> None:
    """`next_cursor` goes back as `before`: a generated client must not need to convert it."""
    doc = app.openapi()
    for path, page in (("/v1/orders", "OrderPage"), ("/v1/checkouts", "CheckoutPage")):
        [before] = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "before"]
        cursor = doc["components"]["schemas"][page]["properties"]["next_cursor"]
        given = cursor["anyOf"][0]
        assert {key: before["schema"].get(key) for key in given} == given, (path, cursor, before)


def test_what_bazaar_sends_to_webhook_endpoints_is_in_the_document() -> None:
    """The deliveries (bazaar.integrations.delivery) as OpenAPI 3.1 `webhooks`: the event as the feed lists it,
    and the three Standard Webhooks headers, each required."""
    [delivery] = app.openapi()["webhooks"]["event"].values()
    assert delivery["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EventOut"
    }
    headers = {p["name"]: p["required"] for p in delivery["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id": True, "webhook-timestamp": True, "webhook-signature": True}
    assert list(delivery["responses"]) == ["2XX"]


def test_a_currency_is_one_enum_wherever_it_is_asked_for() -> None:
    """A price's currency, a payout account's and search's filter are the one `Currency` component, so a
    generated client has one type for them (not three copies of the same values)."""
    doc = app.openapi()
    schemas = doc["components"]["schemas"]
    ref = {"$ref": "#/components/schemas/Currency"}
    assert schemas["Price"]["properties"]["currency"]["$ref"] == ref["$ref"]
    assert schemas["PayoutAccountIn"]["properties"]["default_currency"]["$ref"] == ref["$ref"]
    [currency] = [
        p for p in doc["paths"]["/v1/search/listings"]["get"]["parameters"] if p["name"] == "currency"
    ]
    assert currency["schema"]["$ref"] == ref["$ref"], currency
    inline = [
        name
        for name, schema in schemas.items()
        for node in _schema_nodes(schema)
        if name != "Currency" and "EUR" in node.get("enum", [])
    ]
    assert not inline, inline


# The sides of reconciliation's comparison, kept as found so a mismatch shows (the provider's code as it said it;
# a checkout's several rows joined, "EUR/USD").
AS_FOUND = {
    ("MoneySideOut", "currency"),
    ("ReconciliationItemOut", "provider_currency"),
    ("ReconciliationItemOut", "ours_currency"),
    ("ReconciliationItemOut", "ledger_currency"),
}


def test_a_currency_in_an_answer_is_the_same_enum_as_in_a_request() -> None:
    """Every currency the API answers (a price, an order's total, a balance, a ledger line...) is the `Currency`
    a request takes: a generated client compares them as one type (found from outside: plain strings)."""
    schemas = app.openapi()["components"]["schemas"]
    ref = "#/components/schemas/Currency"
    for model in ("Money", "BalanceOut", "LedgerLineOut", "MoneyStatementOut", "PayoutAccountOut"):
        field = "default_currency" if model == "PayoutAccountOut" else "currency"
        assert schemas[model]["properties"][field]["$ref"] == ref, model
    plain = [
        (name, prop)
        for name, schema in schemas.items()
        for prop, node in schema.get("properties", {}).items()
        if prop.endswith("currency") and (name, prop) not in AS_FOUND and ref not in str(node)
    ]
    assert not plain, plain


def test_a_notification_event_type_is_one_enum_wherever_it_is_named() -> None:
    schemas = app.openapi()["components"]["schemas"]
    assert "order_paid" in schemas["NotificationEventType"]["enum"]
    for model in ("NotificationOut", "PreferenceIn", "UnsubscribedOut"):
        assert schemas[model]["properties"]["event_type"] == {
            "$ref": "#/components/schemas/NotificationEventType"
        }
    # Preferences are keyed by event type, then by channel: both named in the document, not any string.
    preferences = schemas["PreferencesOut"]
    assert preferences["propertyNames"] == {"$ref": "#/components/schemas/NotificationEventType"}
    assert preferences["additionalProperties"]["propertyNames"] == {
        "$ref": "#/components/schemas/NotificationChannel"
    }
    assert preferences["additionalProperties"]["additionalProperties"] == {"type": "boolean"}
    # A dead letter is any mail: a notification's, or an account mail's (verify, reset), never in an inbox.
    assert schemas["DeadLetterOut"]["properties"]["event_type"] == {
        "$ref": "#/components/schemas/MailedEventType"
    }
    mailed = set(schemas["MailedEventType"]["enum"])
    assert set(schemas["NotificationEventType"]["enum"]) < mailed
    assert {"account_verify_email", "account_password_reset", "account_registration_attempt"} < mailed


def test_every_operation_says_what_it_does_and_where_it_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    """What client generators and API browsers show: a description on every operation (its handler's
    docstring), and the deployment's base URL as the server."""
    doc = app.openapi()
    undescribed = [
        f"{method.upper()} {path}"
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if not operation.get("description", "").strip()
    ]
    assert not undescribed, undescribed
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://market.example")
    get_settings.cache_clear()
    try:
        deployed = create_app().openapi()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert deployed["servers"] == [
        {"url": "https://market.example", "description": "this deployment (PUBLIC_BASE_URL)"}
    ]


def test_every_answer_is_a_named_schema_or_a_list_of_one() -> None:
    """Found from outside: the notification preferences were an inline map, which a generated client names
    `GetNotificationPreferencesResponseGetnotificationpreferences`. Every 2xx body is a component (or a list of
    one), so clients get the names the document gives."""
    inline = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not status.startswith("2") or schema is None:
                    continue
                if "$ref" not in schema and "$ref" not in schema.get("items", {}):
                    inline.append(f"{method} {path} {status}")
    assert not inline, inline


def test_every_enum_is_a_named_component() -> None:
    """A generated client gets one type per set of values (found from outside: ten were inline, and the client
    made a type per place, such as `RegisterInRolesItem` beside `Role`)."""
    doc = app.openapi()
    named = {id(schema) for schema in doc["components"]["schemas"].values()}
    inline = [
        node["enum"]
        for node in _schema_nodes({"paths": doc["paths"], "components": doc["components"]})
        if len(node.get("enum", [])) > 1 and id(node) not in named
    ]
    assert not inline, inline


def test_a_parcels_tracking_is_one_named_type_of_known_fields() -> None:
    """A generated client reads `tracking` (an order's, a return's) as typed fields, not a map of strings: the
    fields a shipment may carry, each present only when given, never null."""
    schemas = app.openapi()["components"]["schemas"]
    tracking = schemas["Tracking"]
    assert set(tracking["properties"]) == {"carrier", "tracking_number", "tracking_url"}
    assert all(field == {**field, "type": "string"} for field in tracking["properties"].values())
    assert "required" not in tracking and "additionalProperties" not in tracking
    for owner in ("OrderOut", "OrderDetailOut", "ReturnOut"):
        field = schemas[owner]["properties"]["tracking"]
        assert {"$ref": "#/components/schemas/Tracking"} in field["anyOf"], owner


def test_no_parameter_takes_null() -> None:
    """A parameter left out is not sent; there is no null to send in a header, a query or a path. Found from
    outside: `Idempotency-Key` typed "string or null" gave a generated client a parameter that took None and then
    failed inside its HTTP client."""
    nullable = [
        f"{method} {path} {parameter['name']}"
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if any(node.get("type") == "null" for node in _schema_nodes(parameter["schema"]))
    ]
    assert not nullable, nullable


def test_a_listings_attributes_are_refused_by_the_document_where_the_api_refuses_them() -> None:
    """Found from outside: the attributes' key rule was a `patternProperties` alone, so a key outside it (a
    control character, a blank key) could hold anything and passed the document, while the API refused it."""

    doc = app.openapi()
    for model in ("ListingIn", "ListingPatch"):
        attributes = doc["components"]["schemas"][model]["properties"]["attributes"]
        schema = attributes["anyOf"][0] if "anyOf" in attributes else attributes
        check = jsonschema.Draft202012Validator(schema)
        assert check.is_valid({"frame_size": "56 cm", "colour": "blue"}), model
        for refused in ({"size\b": "5"}, {" ": "x"}, {"": "x"}, {"frame": 5}, {"frame": {"cm": "56"}}):
            assert not check.is_valid(refused), (model, refused)
