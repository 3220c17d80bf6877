"""The OpenAPI document is a contract generated clients can trust (docs/api.md, "How the contract is kept").

- It is valid OpenAPI, as built in process and as served by the running API.
- Schemathesis runs its examples, coverage, fuzzing and stateful phases against every operation of the live
  test stack, with the checks `not_a_server_error`, `status_code_conformance`, `content_type_conformance` and
  `response_schema_conformance`, and must find nothing. It is bounded (`MAX_EXAMPLES` per operation,
  `STATEFUL_STEPS` per scenario) and derandomized (`SEED`), so a run takes about a minute and finds the same
  cases every time. The caller is one user who is buyer, seller and support, in a world of real data
  (`world`): listings, orders in several states, a dispute and reviews, whose ids schemathesis draws from
  dictionaries, so operations reach the domain instead of stopping at a 404, and responses with real bodies
  are held to their schemas.
- Regressions an outside tester found: bad input is a 4xx with the error body, never a 500.

A failure names the operation, what broke and a curl command that reproduces it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.engine import events, from_schema

from api.app import app
from api.openapi import SCHEMAS
from bazaar.errors import ErrorCode
from tests.support.http import (
    PASSWORD,
    Actor,
    published_listing,
    register,
    run_cli,
    seller_with_payout,
)
from tests.support.money import act, act_then_paid_out, place, post_event, post_signed

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",  # a body the document forbids (a string for a number, 0 for a boolean) is refused
    "allow_header_conformance",  # a 405 names every method the path has
    "unsupported_method",
    "use_after_free",
    "ignored_auth",
    "headers_are_declared",  # below: the document lists every header an answer carries (README)
)
# What HTTP itself puts on an answer, which the document leaves to the transport.
TRANSPORT_HEADERS = frozenset(
    {"date", "server", "content-length", "content-type", "connection", "keep-alive", "transfer-encoding"}
)


@schemathesis.check
def headers_are_declared(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every header of an answer, but the transport's, is declared for that operation and status (found from
    outside: Cache-Control and Vary were sent and declared nowhere)."""
    definition = case.operation.responses.find_by_status_code(response.status_code)
    if definition is None:
        return None  # an undeclared status: status_code_conformance says so
    declared = {name.lower() for name, _ in definition.headers.items()}
    undeclared = sorted(set(response.headers) - declared - TRANSPORT_HEADERS)
    if undeclared:
        raise AssertionError(
            f"{response.status_code} carries headers the document does not declare: {undeclared}"
        )
    return None


# Off, because the rules they test are ours on purpose: `positive_data_acceptance` counts as "valid data
# rejected" every domain refusal the document cannot state as a schema (an unknown category, a weak password,
# a stale If-Match's 412, a payment the provider declines), and `missing_required_header` expects a 4xx other
# than the 428 Precondition Required that RFC 6585 gives a missing If-Match.
# Bounds of the run (about a minute on 2 cores). `make test-long` raises them to search harder (the environment
# variables below; SCHEMATHESIS_SEED tries other cases); a failure found that way is a defect all the same.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
STATEFUL_STEPS = int(os.environ.get("SCHEMATHESIS_STATEFUL_STEPS", "6"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261126"))
# Operations that end sessions: each runs as a throwaway user of its own (per worker thread), so the run's
# caller keeps its token. A logout ends the session (or, with `everywhere`, all of them), and wrong current
# passwords lock the account's logins after a few (the lockout is not relaxed on the test stack).
SESSION_ENDING = frozenset({"POST /v1/auth/logout", "POST /v1/auth/password"})


# ------------------------------------------------------------------------------------------- the document


def test_the_document_is_valid_openapi(http: httpx.Client) -> None:
    built = app.openapi()
    validate(built)
    served = http.get("/openapi.json")
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("application/json")
    validate(served.json())
    # What is validated in process is what clients get; `servers` names each process's own PUBLIC_BASE_URL.
    assert {**served.json(), "servers": None} == {**built, "servers": None}
    assert served.json()["servers"][0]["url"] == str(http.base_url).rstrip("/")


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix(SCHEMAS)]
    return schema


def _examples(doc: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """A request body's examples: the media type's own, or its schema's (of a union: its members')."""
    if media.get("examples"):
        return [example.get("value") for example in media["examples"].values()]
    schema = _resolve(doc, media.get("schema", {}))
    found = list(schema.get("examples", []))
    for member in schema.get("anyOf", []):
        found += _resolve(doc, member).get("examples", [])
    return found


# Error statuses answered with a body of their own, with the reason.
OWN_ERROR_BODIES = {
    (
        "GET /readyz",
        "503",
    ): "a readiness probe's answer names the checks that failed (ReadyOut), for orchestrators"
}


# Properties that name a state or a kind must be enums in the document, so generated clients get the values.
STATE_FIELD = re.compile(
    r"(^|_)(status|state|kind|party|role|roles|action|event|resolution|source|direction|condition|channel"
    r"|outcome|object_type)$"
)
# The exceptions, each with its reason.
FREE_STATE_FIELDS = {
    # what each side recorded, shown side by side for people to compare: the provider's own object statuses
    ("MoneySideOut", "status"),
    ("ReconciliationItemOut", "ours_status"),
    ("ReconciliationItemOut", "provider_status"),
}


def _is_enum(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    if "enum" in schema or "const" in schema:
        return True
    if "$ref" in schema:
        return _is_enum(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(_is_enum(s, schemas) or s.get("type") == "null" for s in schema[key])
    return schema.get("type") == "array" and _is_enum(schema.get("items", {}), schemas)


def test_every_state_field_is_an_enum() -> None:
    schemas = app.openapi()["components"]["schemas"]
    free = [
        (name, field)
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if STATE_FIELD.search(field)
        and (name, field) not in FREE_STATE_FIELDS
        and not _is_enum(prop, schemas)
    ]
    assert not free, free


def test_the_documents_own_rules() -> None:
    """What docs/api.md promises of the document itself, beyond valid OpenAPI."""
    doc = app.openapi()
    text = json.dumps(doc)
    problems: list[str] = []
    ids = [operation.get("operationId", "") for _, operation in _operations(doc)]
    problems += [f"operationId {i!r} is not unique" for i in set(ids) if ids.count(i) > 1]
    error_refs = ({"$ref": SCHEMAS + "ErrorOut"}, {"$ref": SCHEMAS + "ValidationErrorOut"})
    for where, operation in _operations(doc):
        if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", operation.get("operationId", "")):
            problems.append(f"{where}: operationId {operation.get('operationId')!r} is not camelCase")
        if len(operation.get("tags", [])) != 1:
            problems.append(f"{where}: tags {operation.get('tags')} (one expected)")
        declared = {tag["name"] for tag in doc.get("tags", [])}
        problems += [
            f"{where}: tag {t!r} is not declared" for t in operation.get("tags", []) if t not in declared
        ]
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if not _examples(doc, media):
                problems.append(f"{where}: the {media_type} body has no examples")
            if {"type": "null"} in media.get("schema", {}).get("anyOf", []):
                problems.append(f"{where}: the body is a model or null (an optional body is a model)")
        for status, response in operation["responses"].items():
            schemas = [media.get("schema") for media in response.get("content", {}).values()]
            own = OWN_ERROR_BODIES.get((where, status))
            if int(status) >= 400 and own is None and schemas not in ([ref] for ref in error_refs):
                problems.append(f"{where}: {status} is not the error body ({schemas})")
    assert not problems, "\n".join(problems)
    assert "HTTPValidationError" not in text  # FastAPI's own 422 body, which the API never sends
    place_order = doc["paths"]["/v1/orders"]["post"]["parameters"]
    assert {"name": "Idempotency-Key", "in": "header", "required": True} in [
        {k: p[k] for k in ("name", "in", "required")} for p in place_order
    ]
    update_listing = doc["paths"]["/v1/listings/{listing_id}"]["patch"]["parameters"]
    assert any(
        p["name"].lower() == "if-match" and p["in"] == "header" and p["required"] for p in update_listing
    )
    # Every error code is in the document's enum and in docs/api.md's table.
    conventions = (ROOT / "docs" / "api.md").read_text()
    assert set(doc["components"]["schemas"]["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}
    assert [code.value for code in ErrorCode if f"`{code.value}`" not in conventions] == []


# ------------------------------------------------------------------------------------ the world it runs in


@dataclass
class World:
    """Real data for the run: the caller (buyer, seller and support) and what it can act on."""

    caller: Actor
    token: str
    categories: list[str]
    listings: list[str]  # everyone's: the caller's own (active and draft) and another seller's (active)
    for_sale: list[str]  # another seller's active listings, which the caller may buy
    orders: list[str]  # the caller's: bought (paid, completed, disputed) and sold (paid)
    users: list[str]
    reviews: list[str] = field(default_factory=list)


def _leaf_slugs(tree: list[dict[str, Any]]) -> Iterator[str]:
    for node in tree:
        yield node["slug"]
        yield from _leaf_slugs(node["children"])


@pytest.fixture(scope="module")
def world(http: httpx.Client, stack: Any) -> World:
    # The caller: buyer and seller with a payout account, granted support; then a token carrying all three.
    caller = register(http, ["buyer", "seller"], "Contract")
    payout = http.post(
        "/v1/payout-account", json={"country": "DE", "default_currency": "EUR"}, headers=caller.headers
    )
    assert payout.status_code == 201, payout.text
    run_cli(stack, "grant-role", caller.email, "support")
    login = http.post("/v1/auth/token", data={"username": caller.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    caller = Actor(caller.user_id, caller.email, {"Authorization": f"Bearer {token}"})
    assert set(http.get("/v1/users/me", headers=caller.headers).json()["roles"]) == {
        "buyer",
        "seller",
        "support",
    }

    seller = seller_with_payout(http)
    buyer = register(http, ["buyer"], "Buyer")
    plenty = {"quantity": 10_000}
    for_sale = [published_listing(http, seller, **plenty)["id"] for _ in range(2)]
    own = published_listing(http, caller, **plenty)["id"]
    draft = http.post(
        "/v1/listings",
        json={"title": "Draft lamp", "price": {"amount": 2_500, "currency": "EUR"}, "category": "home"},
        headers=caller.headers,
    )
    assert draft.status_code == 201, draft.text

    def bought(by: Actor, listing: str) -> str:
        placed = place(http, by, listing)
        assert placed.status_code == 201 and placed.json()["status"] == "paid", placed.text
        return str(placed.json()["id"])

    paid = bought(caller, for_sale[0])
    sold = bought(buyer, own)
    completed = bought(caller, for_sale[1])
    act(http, completed, "accept", seller)
    act(http, completed, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD014600003SE"})
    act_then_paid_out(http, completed, "confirm-receipt", caller)
    reviews = []
    for author, text in ((caller, "As described"), (seller, "Paid quickly")):
        review = http.post(
            f"/v1/orders/{completed}/reviews", json={"rating": 5, "text": text}, headers=author.headers
        )
        assert review.status_code == 201, review.text
        reviews.append(str(review.json()["id"]))
    disputed = bought(caller, for_sale[0])
    act(http, disputed, "accept", seller)
    act(http, disputed, "fulfil", seller, {"carrier": "DHL", "tracking_number": "JD014600003SE"})
    act(http, disputed, "dispute", caller, {"reason_code": "not_as_described", "message": "Scratched frame"})

    categories = list(_leaf_slugs(http.get("/v1/categories").json()["categories"]))
    return World(
        caller=caller,
        token=token,
        categories=categories,
        listings=[*for_sale, own, str(draft.json()["id"])],
        for_sale=for_sale,
        orders=[paid, sold, completed, disputed],
        users=[caller.user_id, seller.user_id, buyer.user_id],
        reviews=reviews,
    )


# ------------------------------------------------------------------------------------------- schemathesis


def _config(world: World) -> schemathesis.Config:
    """The run's settings (schemathesis.toml's keys): bounded, derandomized, the checks in CHECKS only, and
    dictionaries of the world's ids bound to the parameters that take them (each drawn with a probability,
    so generated values are still tried)."""
    dictionaries = {
        "categories": world.categories,
        "listings": world.listings,
        "for_sale": world.for_sale,
        "orders": world.orders,
        "users": world.users,
        "reviews": world.reviews,
    }
    bindings = {
        "body.category": ("categories", 0.8),
        "body.listing_id": ("for_sale", 0.8),
        "path.listing_id": ("listings", 0.5),
        "path.order_id": ("orders", 0.5),
        "path.user_id": ("users", 0.5),
        "path.review_id": ("reviews", 0.5),
    }
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Hypothesis's health checks judge how fast and how easily cases are generated, which on a loaded
            # CI machine in front of a real stack says nothing about the API: they are off, the checks stay.
            "suppress-health-check": ["all"],
            # One worker thread: CPython 3.11 before 3.11.8 can raise a spurious "AST constructor recursion depth
            # mismatch" when two threads build ASTs at once and a garbage collection lands between (gh-106905);
            # seen once here, with two pytest-xdist workers loading the machine.
            "workers": 1,
            # A dispute Update on a loaded CI machine can take more than schemathesis's default 10 s to answer.
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "checks": {"enabled": False, **{check: {"enabled": True} for check in CHECKS}},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": STATEFUL_STEPS},
            },
            "dictionaries": {name: {"values": values} for name, values in dictionaries.items()},
            "parameters": {
                key: {"dictionary": name, "probability": probability}
                for key, (name, probability) in bindings.items()
            },
        }
    )


def _auth(schema: Any, api_url: str, world: World) -> None:
    """The caller's token on every operation; a throwaway user's fresh session on the session-ending ones."""
    throwaway: dict[tuple[str, int], str] = {}  # by operation and worker thread: no two share a user

    def fresh_session(label: str) -> str:
        key = (label, threading.get_ident())
        with httpx.Client(base_url=api_url, timeout=30) as http:
            for _ in range(2):
                if key in throwaway:
                    login = http.post(
                        "/v1/auth/token", data={"username": throwaway[key], "password": PASSWORD}
                    )
                    if login.status_code == 200:
                        return str(login.json()["access_token"])
                throwaway[key] = register(http, ["buyer"], "Throwaway").email  # new, or locked out
        raise AssertionError(f"no session for {label}")

    class Tokens:
        def get(self, case: Any, context: Any) -> str:
            label = f"{context.operation.method.upper()} {context.operation.path}"
            return fresh_session(label) if label in SESSION_ENDING else world.token

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    schema.auth.auth(refresh_interval=None)(Tokens)


@dataclass
class Findings:
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    scenarios: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished):
            phase = event.phase.value
            self.scenarios[phase] = self.scenarios.get(phase, 0) + 1
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None and phase != "stateful":
                    statuses = self.statuses.setdefault(event.recorder.label, set())
                    statuses.add(interaction.response.status_code)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (event.recorder.label, failure.title)
                    self.failures.setdefault(
                        key,
                        f"[{phase}] {event.recorder.label}: {failure.title} ({check.name})\n"
                        f"{failure.message}\n{check.failure_info.code_sample}",
                    )
        elif isinstance(event, events.NonFatalError):
            self.errors.append(f"[{event.phase}] {event.label}: {event.info.title}\n{event.info.message}")
        elif isinstance(event, events.FatalError):
            self.errors.append(f"fatal: {event.exception!r}")


def test_schemathesis_finds_nothing(stack: Any, world: World) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json", config=_config(world))
    _auth(schema, stack.api_url, world)
    findings = Findings()
    started = time.monotonic()
    for event in from_schema(schema).execute():
        findings.record(event)
        if isinstance(event, events.EngineFinished):
            assert event.stop_reason == "completed", event.stop_reason
    elapsed = time.monotonic() - started
    print(f"schemathesis: {findings.scenarios} scenarios in {elapsed:.0f} s")
    for operation, seen in sorted(findings.statuses.items()):
        print(f"  {operation}: {sorted(seen)}")

    assert not findings.errors, "\n\n".join(findings.errors)
    assert not findings.failures, f"{len(findings.failures)} failures:\n\n" + "\n\n".join(
        findings.failures.values()
    )
    # The run reached every operation, and the authenticated ones as the caller (not just 401s).
    operations = {f"{m.upper()} {p}" for p, ms in app.openapi()["paths"].items() for m in ms}
    assert operations <= findings.statuses.keys(), operations - findings.statuses.keys()
    assert set(findings.scenarios) == {"examples", "coverage", "fuzzing", "stateful"}, findings.scenarios
    unauthorized = [op for op, seen in findings.statuses.items() if seen and seen <= {401, 405}]
    assert not unauthorized, unauthorized


# ------------------------------------------------------------------------- regressions an outside tester found


def test_an_unknown_order_status_is_422(http: httpx.Client, world: World) -> None:
    listed = http.get("/v1/orders", params={"status": "bogus"}, headers=world.caller.headers)
    assert listed.status_code == 422, listed.text
    error = listed.json()["error"]
    assert error["code"] == "validation_error"
    assert ["query", "status"] in [e["loc"] for e in error["details"]["errors"]]


# Every text refuses a NUL, passwords given to log in too (the README: "in any text"). The webhook's body is
# checked for its signature first (400 invalid_signature); a signed one with a NUL is
# test_a_signed_webhook_event_the_api_cannot_read_is_400's.
SIGNED_BODY = "POST /v1/webhooks/stripe"


def _text_leaves(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _text_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _text_leaves(item, (*path, index))


def _replaced(value: Any, path: tuple[str | int, ...], new: str) -> Any:
    if not path:
        return new
    head, *rest = path
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[head] = _replaced(value[head], tuple(rest), new)  # type: ignore[index]
    return copy


def _path_value(doc: dict[str, Any], parameter: dict[str, Any]) -> str:
    schema = _resolve(doc, parameter["schema"])
    return "1" if schema.get("type") == "integer" else str(uuid.uuid4())


def _takes_text(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A query parameter whose values are free text (not an enum, a number or a UUID)."""
    schema = _resolve(doc, schema)
    if schema.get("type") == "array":
        return _takes_text(doc, schema["items"])
    if "anyOf" in schema:
        return any(_takes_text(doc, member) for member in schema["anyOf"])
    return schema.get("type") == "string" and "enum" not in schema and schema.get("format") != "uuid"


def test_a_nul_in_any_text_field_is_422(http: httpx.Client, world: World) -> None:
    """Every string of every documented request body example, and every free-text query parameter, with a NUL:
    a 422 validation_error naming the field, never a 500 (PostgreSQL text cannot hold a NUL)."""
    doc = app.openapi()
    throwaway = register(http, ["buyer"], "Nul")  # for the operations that end sessions or count lockouts
    problems: list[str] = []
    tried = 0
    for where, operation in _operations(doc):
        method, template = where.split(" ", 1)
        if where == SIGNED_BODY:
            continue
        parameters = operation.get("parameters", [])
        path = template.format(**{p["name"]: _path_value(doc, p) for p in parameters if p["in"] == "path"})
        headers = {**(throwaway if where in SESSION_ENDING else world.caller).headers}
        for p in parameters:
            if p["in"] == "header" and p.get("required"):
                headers[p["name"]] = "*" if p["name"].lower() == "if-match" else str(uuid.uuid4())
        requests: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            for example in _examples(doc, media)[:1]:
                for leaf in _text_leaves(example):
                    body = _replaced(example, leaf, f"{_at(example, leaf)}\x00")
                    kind = "data" if media_type == "application/x-www-form-urlencoded" else "json"
                    requests.append((("body", *leaf), {kind: body}))
        for p in parameters:
            if p["in"] == "query" and _takes_text(doc, p["schema"]):
                required = {q["name"]: "x" for q in parameters if q["in"] == "query" and q.get("required")}
                requests.append((("query", p["name"]), {"params": {**required, p["name"]: "ab\x00"}}))
        for loc, kwargs in requests:
            tried += 1
            response = http.request(method, path, headers=headers, **kwargs)
            locs = [
                tuple(e["loc"][: len(loc)])
                for e in response.json()["error"].get("details", {}).get("errors", [])
            ]
            if response.status_code != 422 or loc not in locs:
                problems.append(
                    f"{where} {'.'.join(map(str, loc))}: {response.status_code} {response.text[:300]}"
                )
    assert tried > 50, tried
    assert not problems, "\n".join(problems)


def _at(value: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def test_a_signed_webhook_event_the_api_cannot_read_is_400(http: httpx.Client, stack: Any) -> None:
    obj = {"id": "pi_contract", "object": "payment_intent", "amount": 45_000}
    cases: list[tuple[str, Any]] = [
        ("no id", {"object": "event", "type": "payment_intent.succeeded", "data": {"object": obj}}),
        ("data not an object", {"id": "evt_c1", "type": "payment_intent.succeeded", "data": "pi_contract"}),
        (
            "data.object not an object",
            {"id": "evt_c2", "type": "customer.created", "data": {"object": ["x"]}},
        ),
        ("data.object a string", {"id": "evt_c3", "type": "customer.created", "data": {"object": "cus_1"}}),
        ("not an object at all", ["evt_c4"]),
        (
            "a NUL (JSONB cannot store it)",
            {"id": "evt_c5", "type": "customer.created", "data": {"object": {"id": "c\x00"}}},
        ),
    ]
    for what, event in cases:
        response = post_signed(http, stack, json.dumps(event))
        assert response.status_code == 400, (what, response.text)
        assert response.json()["error"]["code"] == "invalid_event", (what, response.text)
    # JSON that Python reads as a float PostgreSQL's JSONB refuses (was a 500 when stored).
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = f'{{"id": "evt_{uuid.uuid4().hex}", "type": "customer.created", "data": {{"object": {{"n": {number}}}}}}}'
        response = post_signed(http, stack, raw)
        assert response.status_code == 400, (number, response.text)
        assert response.json()["error"]["code"] == "invalid_event", (number, response.text)
    # A readable event is received.
    ok = post_event(http, stack, "customer.created", {"id": "cus_1", "object": "customer"}, "evt_c_ok")
    assert ok.status_code == 200, ok.text
