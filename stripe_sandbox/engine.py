"""Stripe API semantics: the objects, their state machines and the platform ledger.

Every operation is synchronous and runs without awaiting, so within the single
event loop each request mutates state atomically; the HTTP layer adds auth,
idempotency, faults, persistence and webhooks around it.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stripe_sandbox.errors import StripeError, invalid, missing
from stripe_sandbox.state import Store, new_id, now

JSON = dict[str, Any]

DEFAULT_API_VERSION = "2025-01-27.acacia"

# Stripe's minimum charge amounts (minor units), from
# https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts (bazaar.payments.money.MIN_CHARGE is the
# same table: the API refuses up front what the provider would refuse).
MIN_CHARGE = {
    "usd": 50,
    "eur": 50,
    "gbp": 30,
    "chf": 50,
    "sek": 300,
    "nok": 300,
    "dkk": 250,
    "pln": 200,
    "czk": 1500,
    "cad": 50,
    "aud": 50,
    "jpy": 50,
}


@dataclass(frozen=True)
class TestCard:
    """Behaviour of one Stripe test PaymentMethod token."""

    brand: str
    last4: str
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


TEST_PAYMENT_METHODS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_visa_debit": TestCard("visa", "5556"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_chargeDeclined": TestCard(
        "visa", "0002", "card_declined", "generic_decline", "Your card was declined."
    ),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedFraudulent": TestCard(
        "visa", "0019", "card_declined", "fraudulent", "Your card was declined."
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", "expired_card", "expired_card", "Your card has expired."
    ),
    "pm_card_chargeDeclinedProcessingError": TestCard(
        "visa",
        "0119",
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}

PI_CANCELABLE = (
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
)
PI_CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")

# How a new connected account starts: `onboarded` (able to take charges and receive payouts at once, so the dev
# and test stacks' sellers sell right away) or `pending` (as on Stripe: nothing enabled until the account
# holder finishes the hosted onboarding of an account link, or a test calls POST /_sandbox/accounts/{id}/onboard).
NEW_ACCOUNT_MODES = ("onboarded", "pending")
# What a pending account still has to provide: the requirements of Stripe's example account (fixtures3.json).
ONBOARDING_FIELDS = [
    "business_profile.product_description",
    "business_profile.support_phone",
    "business_profile.url",
    "external_account",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
# What falls past due when a test restricts an account (POST /_sandbox/accounts/{id}/restrict), by what it disables.
RESTRICTIONS = {"charges": ["individual.verification.document"], "payouts": ["external_account"]}
ACCOUNT_LINK_SECONDS = 300  # Stripe's account links expire after a few minutes

# Parameters accepted (and mostly ignored) besides the ones the sandbox acts on, so
# realistic SDK calls work while typos still get Stripe's ``parameter_unknown``.
_PI_PASSTHROUGH = {
    "customer",
    "receipt_email",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "payment_method_types",
    "automatic_payment_methods",
    "on_behalf_of",
    "transfer_data",
    "application_fee_amount",
    "setup_future_usage",
    "off_session",
    "return_url",
    "confirmation_method",
    "error_on_requires_action",
    "use_stripe_sdk",
    "shipping",
    "payment_method_options",
    "mandate_data",
    "radar_options",
    "payment_method_data",
}


def _list_obj(url: str, data: list[JSON] | None = None, has_more: bool = False) -> JSON:
    return {"object": "list", "data": data or [], "has_more": has_more, "url": url}


@dataclass
class Context:
    """Per-request facts that end up in events (``request.id``, ``idempotency_key``)."""

    request_id: str
    idempotency_key: str | None = None
    api_version: str = DEFAULT_API_VERSION
    events: list[JSON] = field(default_factory=list)
    base_url: str = ""  # where this sandbox was reached, for the URLs it hands out (account links)


class Params:
    """Typed access to decoded form params with Stripe's validation errors."""

    def __init__(self, raw: JSON, allowed: set[str] | None = None) -> None:
        self.raw = raw
        if allowed is not None:
            for key in raw:
                if key not in allowed and key != "expand":
                    raise invalid(f"Received unknown parameter: {key}", param=key, code="parameter_unknown")

    def string(
        self, name: str, *, required: bool = False, choices: tuple[str, ...] | None = None
    ) -> str | None:
        """A string param; '' counts as unset like Stripe."""
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise invalid(f"Missing required param: {name}.", param=name, code="parameter_missing")
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", param=name, code="parameter_invalid_string")
        if choices is not None and value not in choices:
            raise invalid(
                f"Invalid {name}: must be one of {', '.join(choices)}",
                param=name,
                code="parameter_invalid_string",
            )
        return value

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        """An integer param (money is always integer minor units)."""
        value = self.string(name, required=required)
        if value is None:
            return None
        try:
            number = int(value)
        except ValueError:
            raise invalid(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer") from None
        if minimum is not None and number < minimum:
            raise invalid(
                f"This value must be greater than or equal to {minimum}.",
                param=name,
                code="parameter_invalid_integer",
            )
        return number

    def boolean(self, name: str) -> bool:
        """Stripe booleans arrive as 'true'/'false'."""
        value = self.string(name)
        if value is None:
            return False
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=name, code="parameter_invalid_boolean")
        return value == "true"

    def currency(self, *, required: bool = True) -> str | None:
        """Lower-cased ISO currency, as Stripe stores it."""
        value = self.string("currency", required=required)
        if value is None:
            return None
        if len(value) != 3 or not value.isalpha():
            raise invalid(
                f"Invalid currency: {value.lower()}.", param="currency", code="parameter_invalid_string"
            )
        return value.lower()

    def metadata(self, existing: dict[str, str] | None = None) -> dict[str, str]:
        """Merge ``metadata[...]``; an empty value deletes the key, as on Stripe."""
        result = dict(existing or {})
        value = self.raw.get("metadata")
        if value is None:
            return result
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise invalid("Invalid metadata: must be a hash", param="metadata")
        for key, val in value.items():
            if not isinstance(val, str):
                raise invalid(f"Invalid value for metadata[{key}]", param=f"metadata[{key}]")
            if len(key) > 40:
                raise invalid("Metadata keys can be at most 40 characters.", param=f"metadata[{key}]")
            if len(val) > 500:
                raise invalid("Metadata values can be at most 500 characters.", param=f"metadata[{key}]")
            if val == "":
                result.pop(key, None)
            else:
                result[key] = val
        if len(result) > 50:
            raise invalid("Metadata can have at most 50 keys.", param="metadata")
        return result

    def expand(self) -> list[str]:
        """``expand[]`` / ``expand[0]`` values."""
        value = self.raw.get("expand")
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise invalid("Invalid array", param="expand")


class Engine:
    """All API operations over a :class:`Store`."""

    def __init__(
        self, store: Store, *, webhooks_enabled: bool = False, new_accounts: str = "onboarded"
    ) -> None:
        self.store = store
        self.webhooks_enabled = webhooks_enabled
        self.new_accounts = new_accounts  # one of NEW_ACCOUNT_MODES

    # ------------------------------------------------------------------ helpers
    def _emit(self, ctx: Context, type_: str, obj: JSON, previous: JSON | None = None) -> None:
        data: JSON = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event: JSON = {
            "id": new_id("event"),
            "object": "event",
            "api_version": ctx.api_version,
            "created": now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.webhooks_enabled else 0,
            "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
            "type": type_,
        }
        self.store.put(event)
        ctx.events.append(event)

    def _get(self, kind: str, obj_id: str, param: str = "id") -> JSON:
        obj = self.store.get(kind, obj_id)
        if obj is None:
            raise missing(kind, obj_id, param)
        return obj

    def _ledger(
        self,
        ctx: Context,
        *,
        amount: int,
        currency: str,
        type_: str,
        source: str,
        description: str | None,
        reporting_category: str,
    ) -> JSON:
        """Record a balance transaction; all are available immediately (no payout schedule)."""
        created = now()
        txn: JSON = {
            "id": new_id("balance_transaction"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created,
            "balance_type": "payments",
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": reporting_category,
            "source": source,
            "status": "available",
            "type": type_,
        }
        return self.store.put(txn)

    def available(self, currency: str) -> int:
        """Platform available balance in one currency: the sum of all ledger entries."""
        return sum(
            t["net"] for t in self.store.objects("balance_transaction").values() if t["currency"] == currency
        )

    def expand(self, obj: JSON, paths: list[str]) -> JSON:
        """Apply Stripe's ``expand[]`` by replacing id strings with the objects they name."""
        if not paths:
            return obj
        result = copy.deepcopy(obj)
        for path in paths:
            self._expand_path(result, path.split("."), path)
        return result

    def _expand_path(self, node: Any, parts: list[str], full: str) -> None:
        if not parts or not isinstance(node, dict):
            return
        head, rest = parts[0], parts[1:]
        if head == "data" and node.get("object") == "list":
            for item in node["data"]:
                self._expand_path(item, rest, full)
            return
        if head not in node:
            raise invalid(f"This property cannot be expanded ({full}).", param="expand")
        value = node[head]
        if isinstance(value, str):
            target = self.store.find(value)
            if target is None:
                raise invalid(f"This property cannot be expanded ({full}).", param="expand")
            node[head] = copy.deepcopy(target)
            value = node[head]
        self._expand_path(value, rest, full)

    def paginate(
        self, kind: str, url: str, params: Params, predicate: Callable[[JSON], bool] | None = None
    ) -> JSON:
        """Stripe cursor pagination: newest first; limit, starting_after, ending_before, created."""
        limit = params.integer("limit", minimum=1)
        limit = 10 if limit is None else limit
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", param="limit")
        items = [
            o for o in reversed(list(self.store.objects(kind).values())) if predicate is None or predicate(o)
        ]
        items = [o for o in items if _created_matches(o, params.raw.get("created"))]
        starting_after = params.string("starting_after")
        ending_before = params.string("ending_before")
        if starting_after and ending_before:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="starting_after",
            )
        if starting_after is not None:
            if self.store.get(kind, starting_after) is None:
                raise invalid(
                    f"No such {kind}: '{starting_after}'", param="starting_after", code="resource_missing"
                )
            ids = [o["id"] for o in items]
            rest = items[ids.index(starting_after) + 1 :] if starting_after in ids else []
            page, has_more = rest[:limit], len(rest) > limit
        elif ending_before is not None:
            if self.store.get(kind, ending_before) is None:
                raise invalid(
                    f"No such {kind}: '{ending_before}'", param="ending_before", code="resource_missing"
                )
            ids = [o["id"] for o in items]
            before = items[: ids.index(ending_before)] if ending_before in ids else []
            page, has_more = before[-limit:], len(before) > limit
        else:
            page, has_more = items[:limit], len(items) > limit
        return self.expand(_list_obj(url, copy.deepcopy(page), has_more), params.expand())

    # ---------------------------------------------------------- payment intents
    def create_payment_intent(self, ctx: Context, raw: JSON) -> JSON:
        """POST /v1/payment_intents (optionally confirming in the same call)."""
        p = Params(
            raw,
            {
                "amount",
                "currency",
                "payment_method",
                "confirm",
                "capture_method",
                "transfer_group",
                "metadata",
                "description",
            }
            | _PI_PASSTHROUGH,
        )
        amount = p.integer("amount", required=True)
        currency = p.currency()
        assert amount is not None and currency is not None
        _check_amount(amount, currency)
        pm = p.string("payment_method")
        if pm is not None:
            _test_card(pm)
        capture_method = (
            p.string("capture_method", choices=("automatic", "automatic_async", "manual")) or "automatic"
        )
        pi_id = new_id("payment_intent")
        pi: JSON = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": p.integer("application_fee_amount"),
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{pi_id}_secret_{secrets.token_hex(12)}",
            "confirmation_method": "automatic",
            "created": now(),
            "currency": currency,
            "customer": p.string("customer"),
            "customer_account": None,
            "description": p.string("description"),
            "excluded_payment_method_types": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": p.metadata(),
            "managed_payments": None,
            "next_action": None,
            "on_behalf_of": p.string("on_behalf_of"),
            "payment_method": pm,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": p.string("receipt_email"),
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": p.string("statement_descriptor"),
            "statement_descriptor_suffix": p.string("statement_descriptor_suffix"),
            "status": "requires_confirmation" if pm else "requires_payment_method",
            "transfer_data": None,
            "transfer_group": p.string("transfer_group"),
        }
        self.store.put(pi)
        self._emit(ctx, "payment_intent.created", pi)
        if p.boolean("confirm"):
            return self._confirm(ctx, pi, p)
        return self.expand(pi, p.expand())

    def retrieve_payment_intent(self, ctx: Context, raw: JSON, pi_id: str) -> JSON:
        """GET /v1/payment_intents/{id}."""
        return self.expand(self._get("payment_intent", pi_id), Params(raw).expand())

    def list_payment_intents(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/payment_intents."""
        p = Params(raw)
        customer = p.string("customer")
        return self.paginate(
            "payment_intent",
            "/v1/payment_intents",
            p,
            lambda o: customer is None or o["customer"] == customer,
        )

    def confirm_payment_intent(self, ctx: Context, raw: JSON, pi_id: str) -> JSON:
        """POST /v1/payment_intents/{id}/confirm."""
        p = Params(raw, {"payment_method", "capture_method", "metadata"} | _PI_PASSTHROUGH)
        pi = self._get("payment_intent", pi_id)
        return self._confirm(ctx, pi, p)

    def _confirm(self, ctx: Context, pi: JSON, p: Params) -> JSON:
        if pi["status"] not in PI_CONFIRMABLE:
            raise StripeError(
                400,
                "invalid_request_error",
                f"You cannot confirm this PaymentIntent because it has a status of {pi['status']}.",
                code="payment_intent_unexpected_state",
                extra={"payment_intent": copy.deepcopy(pi)},
            )
        pm = p.string("payment_method") or pi["payment_method"]
        if pm is None:
            raise StripeError(
                400,
                "invalid_request_error",
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "You can either update the PaymentIntent with a payment method and then confirm it again, "
                "or confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
                extra={"payment_intent": copy.deepcopy(pi)},
            )
        card = _test_card(pm)
        capture_method = p.string("capture_method", choices=("automatic", "automatic_async", "manual"))
        if capture_method:
            pi["capture_method"] = capture_method
        pi["metadata"] = p.metadata(pi["metadata"])
        pi["payment_method"] = pm
        charge = self._new_charge(pi, pm, card)
        pi["latest_charge"] = charge["id"]
        if card.code is not None:
            error = {
                "type": "card_error",
                "code": card.code,
                "decline_code": card.decline_code,
                "message": card.message,
                "charge": charge["id"],
                "doc_url": f"https://stripe.com/docs/error-codes/{card.code.replace('_', '-')}",
                "payment_method": {"id": pm, "object": "payment_method", "type": "card"},
            }
            pi["status"] = "requires_payment_method"
            pi["last_payment_error"] = error
            pi["payment_method"] = None
            self._emit(ctx, "charge.failed", charge)
            self._emit(ctx, "payment_intent.payment_failed", pi)
            raise StripeError(
                402,
                "card_error",
                card.message or "Your card was declined.",
                code=card.code,
                decline_code=card.decline_code,
                param=None,
                extra={
                    "charge": charge["id"],
                    "payment_intent": copy.deepcopy(pi),
                    "payment_method": error["payment_method"],
                },
                store_idempotent=True,
            )
        pi["last_payment_error"] = None
        if pi["capture_method"] == "manual":
            pi["status"] = "requires_capture"
            pi["amount_capturable"] = pi["amount"]
            self._emit(ctx, "charge.succeeded", charge)
            self._emit(ctx, "payment_intent.amount_capturable_updated", pi)
        else:
            self._capture_charge(ctx, pi, charge, pi["amount"])
            pi["status"] = "succeeded"
            pi["amount_received"] = pi["amount"]
            self._emit(ctx, "charge.succeeded", charge)
            self._emit(ctx, "payment_intent.succeeded", pi)
        return self.expand(pi, p.expand())

    def _new_charge(self, pi: JSON, pm: str, card: TestCard) -> JSON:
        ch_id = new_id("charge")
        failed = card.code is not None
        charge: JSON = {
            "id": ch_id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": 0,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": None,
            "billing_details": {
                "address": {k: None for k in ("city", "country", "line1", "line2", "postal_code", "state")},
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            "calculated_statement_descriptor": "BAZAAR",
            "captured": False,
            "created": now(),
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi["description"],
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": card.code,
            "failure_message": card.message,
            "fraud_details": {},
            "livemode": False,
            "metadata": dict(pi["metadata"]),
            "on_behalf_of": pi["on_behalf_of"],
            "outcome": {
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "declined_by_network" if failed else "approved_by_network",
                "reason": card.decline_code if failed else None,
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline."
                if failed
                else "Payment complete.",
                "type": "issuer_declined" if failed else "authorized",
            },
            "paid": not failed,
            "payment_intent": pi["id"],
            "payment_method": pm,
            "payment_method_details": {
                "card": {
                    "amount_authorized": None if failed else pi["amount"],
                    "brand": card.brand,
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": None,
                        "cvc_check": "pass",
                    },
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "fingerprint": secrets.token_hex(8),
                    "funding": "credit",
                    "last4": card.last4,
                    "network": card.brand,
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "receipt_email": pi["receipt_email"],
            "receipt_number": None,
            "receipt_url": None,
            "refunded": False,
            "refunds": _list_obj(f"/v1/charges/{ch_id}/refunds"),
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": pi["statement_descriptor"],
            "statement_descriptor_suffix": pi["statement_descriptor_suffix"],
            "status": "failed" if failed else "succeeded",
            "transfer_data": None,
            "transfer_group": pi["transfer_group"],
        }
        return self.store.put(charge)

    def _capture_charge(self, ctx: Context, pi: JSON, charge: JSON, amount: int) -> None:
        txn = self._ledger(
            ctx,
            amount=amount,
            currency=charge["currency"],
            type_="charge",
            source=charge["id"],
            description=charge["description"],
            reporting_category="charge",
        )
        charge["captured"] = True
        charge["amount_captured"] = amount
        charge["balance_transaction"] = txn["id"]

    def capture_payment_intent(self, ctx: Context, raw: JSON, pi_id: str) -> JSON:
        """POST /v1/payment_intents/{id}/capture (full or partial; the rest is released)."""
        p = Params(
            raw,
            {
                "amount_to_capture",
                "metadata",
                "application_fee_amount",
                "statement_descriptor",
                "statement_descriptor_suffix",
                "transfer_data",
                "final_capture",
            },
        )
        pi = self._get("payment_intent", pi_id)
        if pi["status"] != "requires_capture":
            raise StripeError(
                400,
                "invalid_request_error",
                f"This PaymentIntent could not be captured because it has a status of {pi['status']}. "
                "Only a PaymentIntent with one of the following statuses may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
                extra={"payment_intent": copy.deepcopy(pi)},
            )
        amount = p.integer("amount_to_capture", minimum=1)
        amount = pi["amount_capturable"] if amount is None else amount
        if amount > pi["amount_capturable"]:
            raise invalid(
                f"The amount_to_capture ({amount}) must be less than or equal to the amount_capturable "
                f"({pi['amount_capturable']}).",
                param="amount_to_capture",
                code="amount_too_large",
            )
        charge = self._get("charge", pi["latest_charge"])
        self._capture_charge(ctx, pi, charge, amount)
        pi["metadata"] = p.metadata(pi["metadata"])
        pi["amount_received"] = amount
        pi["amount_capturable"] = 0
        pi["status"] = "succeeded"
        self._emit(ctx, "charge.captured", charge)
        self._emit(ctx, "payment_intent.succeeded", pi)
        return self.expand(pi, p.expand())

    def cancel_payment_intent(self, ctx: Context, raw: JSON, pi_id: str) -> JSON:
        """POST /v1/payment_intents/{id}/cancel (releases an uncaptured authorization)."""
        p = Params(raw, {"cancellation_reason"})
        reason = p.string(
            "cancellation_reason", choices=("duplicate", "fraudulent", "requested_by_customer", "abandoned")
        )
        pi = self._get("payment_intent", pi_id)
        if pi["status"] not in PI_CANCELABLE:
            raise StripeError(
                400,
                "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
                "PaymentIntent with one of the following statuses may be canceled: "
                + ", ".join(PI_CANCELABLE)
                + ".",
                code="payment_intent_unexpected_state",
                extra={"payment_intent": copy.deepcopy(pi)},
            )
        if pi["status"] == "requires_capture" and pi["latest_charge"]:
            charge = self._get("charge", pi["latest_charge"])
            charge["refunded"] = True
            charge["amount_refunded"] = charge["amount"]
        pi["status"] = "canceled"
        pi["canceled_at"] = now()
        pi["cancellation_reason"] = reason
        pi["amount_capturable"] = 0
        self._emit(ctx, "payment_intent.canceled", pi)
        return self.expand(pi, p.expand())

    # ------------------------------------------------------------------ charges
    def retrieve_charge(self, ctx: Context, raw: JSON, ch_id: str) -> JSON:
        """GET /v1/charges/{id}."""
        return self.expand(self._get("charge", ch_id), Params(raw).expand())

    def list_charges(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/charges (``payment_intent``/``transfer_group`` filters)."""
        p = Params(raw)
        pi_id = p.string("payment_intent")
        group = p.string("transfer_group")
        return self.paginate(
            "charge",
            "/v1/charges",
            p,
            lambda o: (
                (pi_id is None or o["payment_intent"] == pi_id)
                and (group is None or o["transfer_group"] == group)
            ),
        )

    # ------------------------------------------------------------------ refunds
    def create_refund(self, ctx: Context, raw: JSON) -> JSON:
        """POST /v1/refunds: full or partial, never more than captured minus refunded."""
        p = Params(
            raw,
            {
                "payment_intent",
                "charge",
                "amount",
                "reason",
                "metadata",
                "refund_application_fee",
                "reverse_transfer",
                "instructions_email",
                "origin",
            },
        )
        pi_id = p.string("payment_intent")
        ch_id = p.string("charge")
        amount = p.integer("amount", minimum=1)
        reason = p.string("reason", choices=("duplicate", "fraudulent", "requested_by_customer"))
        metadata = p.metadata()
        if pi_id is None and ch_id is None:
            raise invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if pi_id is not None:
            pi = self._get("payment_intent", pi_id, "payment_intent")
            if pi["status"] != "succeeded" or not pi["latest_charge"]:
                raise invalid(
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                    code="charge_not_refundable"
                    if pi["status"] != "requires_payment_method"
                    else "payment_intent_unexpected_state",
                )
            if ch_id is not None and ch_id != pi["latest_charge"]:
                raise invalid("The charge does not belong to this PaymentIntent.", param="charge")
            ch_id = pi["latest_charge"]
        assert ch_id is not None
        charge = self._get("charge", ch_id, "charge")
        if not charge["captured"]:
            raise invalid(
                f"Charge {ch_id} has not been captured; cancel the PaymentIntent instead.",
                param="charge",
                code="charge_not_refundable",
            )
        if any(
            d["charge"] == ch_id
            and d["status"]
            in ("needs_response", "under_review", "warning_needs_response", "warning_under_review", "lost")
            for d in self.store.objects("dispute").values()
        ):
            raise invalid(
                f"Charge {ch_id} has been charged back; cannot issue a refund.",
                param="charge",
                code="charge_disputed",
            )
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Charge {ch_id} has already been refunded.",
                code="charge_already_refunded",
                param="charge",
                store_idempotent=True,
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                param="amount",
                code="amount_too_large",
            )
        re_id = new_id("refund")
        txn = self._ledger(
            ctx,
            amount=-amount,
            currency=charge["currency"],
            type_="refund",
            source=re_id,
            description="REFUND FOR CHARGE",
            reporting_category="refund",
        )
        refund: JSON = {
            "id": re_id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": txn["id"],
            "charge": ch_id,
            "created": now(),
            "currency": charge["currency"],
            "customer": charge["customer"],
            "customer_account": None,
            "destination_details": {
                "card": {
                    "reference_status": "pending",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            "metadata": metadata,
            "payment_intent": charge["payment_intent"],
            "payment_method": charge["payment_method"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.store.put(refund)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
        self._emit(ctx, "refund.created", refund)
        self._emit(ctx, "charge.refunded", charge)
        return self.expand(refund, p.expand())

    def retrieve_refund(self, ctx: Context, raw: JSON, re_id: str) -> JSON:
        """GET /v1/refunds/{id}."""
        return self.expand(self._get("refund", re_id), Params(raw).expand())

    def list_refunds(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/refunds (``payment_intent``/``charge`` filters)."""
        p = Params(raw)
        pi_id = p.string("payment_intent")
        ch_id = p.string("charge")
        return self.paginate(
            "refund",
            "/v1/refunds",
            p,
            lambda o: (
                (pi_id is None or o["payment_intent"] == pi_id) and (ch_id is None or o["charge"] == ch_id)
            ),
        )

    # ------------------------------------------------------------------ accounts
    def create_account(self, ctx: Context, raw: JSON) -> JSON:
        """POST /v1/accounts: onboarded at once (requested capabilities active) or pending, as set by
        ``new_accounts`` (NEW_ACCOUNT_MODES)."""
        p = Params(
            raw,
            {
                "type",
                "country",
                "email",
                "capabilities",
                "metadata",
                "business_type",
                "business_profile",
                "default_currency",
                "controller",
                "tos_acceptance",
                "settings",
                "individual",
                "company",
                "external_account",
            },
        )
        acct_type = p.string("type", choices=("standard", "express", "custom")) or "standard"
        country = (p.string("country") or "US").upper()
        caps_raw = raw.get("capabilities") or {}
        if not isinstance(caps_raw, dict):
            raise invalid("Invalid hash", param="capabilities")
        onboarded = self.new_accounts == "onboarded"
        capabilities = {
            name: "active" if onboarded else "inactive"
            for name, spec in caps_raw.items()
            if isinstance(spec, dict) and spec.get("requested") == "true"
        }
        acct_id = "acct_" + secrets.token_hex(8)
        account: JSON = {
            "id": acct_id,
            "object": "account",
            "business_profile": {
                "mcc": None,
                "name": None,
                "product_description": None,
                "support_email": None,
                "support_phone": None,
                "support_url": None,
                "url": None,
            },
            "business_type": p.string("business_type"),
            "capabilities": capabilities,
            "charges_enabled": onboarded,
            "controller": {"type": "application" if acct_type != "standard" else "account"},
            "country": country,
            "created": now(),
            "default_currency": p.string("default_currency") or _default_currency(country),
            "details_submitted": onboarded,
            "email": p.string("email"),
            "external_accounts": _list_obj(f"/v1/accounts/{acct_id}/external_accounts"),
            "future_requirements": _no_requirements(),
            "metadata": p.metadata(),
            "payouts_enabled": onboarded,
            "requirements": _no_requirements() if onboarded else _onboarding_requirements(),
            "settings": {"payouts": {"schedule": {"delay_days": 2, "interval": "daily"}}},
            "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
            "type": acct_type,
        }
        self.store.put(account)
        self._emit(ctx, "account.updated", account)
        return self.expand(account, p.expand())

    def retrieve_account(self, ctx: Context, raw: JSON, acct_id: str) -> JSON:
        """GET /v1/accounts/{id}."""
        return self.expand(self._get("account", acct_id, "account"), Params(raw).expand())

    def create_account_link(self, ctx: Context, raw: JSON) -> JSON:
        """POST /v1/account_links: a single-use URL of the hosted onboarding (``visit_account_link``)."""
        p = Params(raw, {"account", "type", "refresh_url", "return_url", "collect", "collection_options"})
        acct_id = p.string("account", required=True)
        assert acct_id is not None
        self._get("account", acct_id, "account")
        p.string("type", required=True, choices=("account_onboarding", "account_update"))
        refresh_url = p.string("refresh_url", required=True)
        return_url = p.string("return_url", required=True)
        token = secrets.token_urlsafe(9)
        created = now()
        links: dict[str, JSON] = self.store.data["account_links"]
        links[token] = {
            "account": acct_id,
            "expires_at": created + ACCOUNT_LINK_SECONDS,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "visited": False,
        }
        return {
            "object": "account_link",
            "created": created,
            "expires_at": created + ACCOUNT_LINK_SECONDS,
            # The shape of Stripe's hosted onboarding URLs (`.../setup/s/<account>/<token>`), on this sandbox.
            "url": f"{ctx.base_url}/setup/s/{acct_id}/{token}",
        }

    def visit_account_link(self, ctx: Context, acct_id: str, token: str) -> str:
        """The hosted onboarding page: the account holder provides everything at once, and is sent to the
        link's ``return_url``; a link that expired or was visited before sends them to its ``refresh_url``
        instead (where the platform makes a new link), as on Stripe."""
        link: JSON | None = self.store.data["account_links"].get(token)
        if link is None or link["account"] != acct_id:
            raise missing("account_link", token)
        if link["visited"] or link["expires_at"] < now():
            return str(link["refresh_url"])
        link["visited"] = True
        self.onboard_account(ctx, {}, acct_id)
        return str(link["return_url"])

    def onboard_account(self, ctx: Context, body: JSON, acct_id: str) -> JSON:
        """Sandbox control (and what the hosted onboarding does): everything is provided, so details are
        submitted, charges and payouts enabled and nothing is due; this also lifts any restriction."""
        account = self._get("account", acct_id, "account")
        self._update_account(
            ctx,
            account,
            capabilities=dict.fromkeys(account["capabilities"], "active"),
            charges_enabled=True,
            details_submitted=True,
            payouts_enabled=True,
            requirements=_no_requirements(),
        )
        return account

    def restrict_account(self, ctx: Context, body: JSON, acct_id: str) -> JSON:
        """Sandbox control: requirements fell past due (an expired document, a bounced bank account), so
        ``disable`` ("charges" or "payouts") is disabled until they are provided (``onboard``). ``past_due``
        names the fields (default: RESTRICTIONS)."""
        account = self._get("account", acct_id, "account")
        disable = body.get("disable")
        if disable not in RESTRICTIONS:
            raise invalid(f"disable must be one of {', '.join(RESTRICTIONS)}", param="disable")
        fields = body.get("past_due", RESTRICTIONS[disable])
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            raise invalid("past_due must be a non-empty list of field names", param="past_due")
        requirements = copy.deepcopy(account["requirements"])
        for key in ("currently_due", "eventually_due", "past_due"):
            requirements[key] = sorted({*requirements[key], *fields})
        if disable == "charges":
            requirements["disabled_reason"] = "requirements.past_due"
        self._update_account(ctx, account, **{f"{disable}_enabled": False, "requirements": requirements})
        return account

    def _update_account(self, ctx: Context, account: JSON, **changes: Any) -> None:
        """Apply changes; if anything changed, emit ``account.updated`` with the previous values."""
        previous = {
            key: copy.deepcopy(account[key]) for key, value in changes.items() if account[key] != value
        }
        if not previous:
            return
        account.update(changes)
        self._emit(ctx, "account.updated", account, previous)

    # ----------------------------------------------------------------- transfers
    def create_transfer(self, ctx: Context, raw: JSON) -> JSON:
        """POST /v1/transfers: moves platform funds to a connected account; checked against balance."""
        p = Params(
            raw,
            {
                "amount",
                "currency",
                "destination",
                "transfer_group",
                "metadata",
                "source_transaction",
                "description",
                "source_type",
            },
        )
        amount = p.integer("amount", required=True, minimum=1)
        currency = p.currency()
        destination = p.string("destination", required=True)
        assert amount is not None and currency is not None and destination is not None
        if self.store.get("account", destination) is None:
            raise invalid(
                f"No such destination: '{destination}'", param="destination", code="resource_missing"
            )
        source_transaction = p.string("source_transaction")
        if source_transaction is not None:
            charge = self.store.get("charge", source_transaction)
            if charge is None or charge["status"] != "succeeded" or not charge["captured"]:
                raise invalid(
                    f"No such charge: '{source_transaction}'",
                    param="source_transaction",
                    code="resource_missing",
                )
            if charge["currency"] != currency:
                raise invalid(
                    "The currency of source_transaction's balance transaction must match the "
                    "transfer currency.",
                    param="currency",
                )
            already = sum(
                t["amount"] - t["amount_reversed"]
                for t in self.store.objects("transfer").values()
                if t["source_transaction"] == source_transaction
            )
            if amount + already > charge["amount_captured"]:
                raise invalid(
                    "Transfer amount exceeds the amount of the source_transaction.",
                    param="amount",
                    code="amount_too_large",
                )
        elif self.available(currency) < amount:
            raise StripeError(
                400,
                "invalid_request_error",
                "You have insufficient available funds in your Stripe account. Try adding funds directly to "
                "your available balance by creating Charges using the 4000000000000077 test card.",
                code="balance_insufficient",
                param="amount",
            )
        tr_id = new_id("transfer")
        txn = self._ledger(
            ctx,
            amount=-amount,
            currency=currency,
            type_="transfer",
            source=tr_id,
            description=p.string("description"),
            reporting_category="transfer",
        )
        transfer: JSON = {
            "id": tr_id,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": txn["id"],
            "created": now(),
            "currency": currency,
            "description": p.string("description"),
            "destination": destination,
            "destination_payment": "py_" + secrets.token_hex(12),
            "livemode": False,
            "metadata": p.metadata(),
            "reversals": _list_obj(f"/v1/transfers/{tr_id}/reversals"),
            "reversed": False,
            "source_transaction": source_transaction,
            "source_type": "card",
            "transfer_group": p.string("transfer_group"),
        }
        self.store.put(transfer)
        self._emit(ctx, "transfer.created", transfer)
        return self.expand(transfer, p.expand())

    def retrieve_transfer(self, ctx: Context, raw: JSON, tr_id: str) -> JSON:
        """GET /v1/transfers/{id}."""
        return self.expand(self._get("transfer", tr_id), Params(raw).expand())

    def list_transfers(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/transfers (``transfer_group``/``destination`` filters)."""
        p = Params(raw)
        group = p.string("transfer_group")
        dest = p.string("destination")
        return self.paginate(
            "transfer",
            "/v1/transfers",
            p,
            lambda o: (
                (group is None or o["transfer_group"] == group) and (dest is None or o["destination"] == dest)
            ),
        )

    def create_reversal(self, ctx: Context, raw: JSON, tr_id: str) -> JSON:
        """POST /v1/transfers/{id}/reversals: returns funds to the platform (``transfer_refund``)."""
        p = Params(raw, {"amount", "metadata", "description", "refund_application_fee"})
        transfer = self._get("transfer", tr_id)
        amount = p.integer("amount", minimum=1)
        remaining = transfer["amount"] - transfer["amount_reversed"]
        if remaining <= 0:
            raise StripeError(
                400,
                "invalid_request_error",
                f"Transfer {tr_id} has already been fully reversed.",
                param="amount",
                store_idempotent=True,
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise invalid(
                f"Transfer reversal amount ({amount}) is greater than the amount remaining to reverse "
                f"({remaining}).",
                param="amount",
                code="amount_too_large",
            )
        trr_id = new_id("transfer_reversal")
        txn = self._ledger(
            ctx,
            amount=amount,
            currency=transfer["currency"],
            type_="transfer_refund",
            source=trr_id,
            description=p.string("description"),
            reporting_category="transfer_reversal",
        )
        reversal: JSON = {
            "id": trr_id,
            "object": "transfer_reversal",
            "amount": amount,
            "balance_transaction": txn["id"],
            "created": now(),
            "currency": transfer["currency"],
            "destination_payment_refund": "pyr_" + secrets.token_hex(12),
            "metadata": p.metadata(),
            "source_refund": None,
            "transfer": tr_id,
        }
        self.store.put(reversal)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        transfer["reversals"]["data"].insert(0, copy.deepcopy(reversal))
        self._emit(ctx, "transfer.reversed", transfer)
        return self.expand(reversal, p.expand())

    def list_reversals(self, ctx: Context, raw: JSON, tr_id: str) -> JSON:
        """GET /v1/transfers/{id}/reversals."""
        self._get("transfer", tr_id)
        return self.paginate(
            "transfer_reversal",
            f"/v1/transfers/{tr_id}/reversals",
            Params(raw),
            lambda o: o["transfer"] == tr_id,
        )

    # ------------------------------------------------------------------- balance
    def retrieve_balance(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/balance: available per currency from the ledger; nothing is ever pending."""
        currencies = sorted({t["currency"] for t in self.store.objects("balance_transaction").values()}) or [
            "usd"
        ]
        available = [
            {"amount": self.available(c), "currency": c, "source_types": {"card": self.available(c)}}
            for c in currencies
        ]
        pending = [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies]
        return {
            "object": "balance",
            "available": available,
            "connect_reserved": [{"amount": 0, "currency": c} for c in currencies],
            "livemode": False,
            "pending": pending,
        }

    def retrieve_balance_transaction(self, ctx: Context, raw: JSON, txn_id: str) -> JSON:
        """GET /v1/balance_transactions/{id}."""
        return self.expand(self._get("balance_transaction", txn_id), Params(raw).expand())

    def list_balance_transactions(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/balance_transactions (``type``/``source``/``currency`` filters)."""
        p = Params(raw)
        type_ = p.string("type")
        source = p.string("source")
        currency = p.string("currency")
        return self.paginate(
            "balance_transaction",
            "/v1/balance_transactions",
            p,
            lambda o: (
                (type_ is None or o["type"] == type_)
                and (source is None or o["source"] == source)
                and (currency is None or o["currency"] == currency.lower())
            ),
        )

    # -------------------------------------------------------------------- events
    def retrieve_event(self, ctx: Context, raw: JSON, evt_id: str) -> JSON:
        """GET /v1/events/{id}."""
        return self._get("event", evt_id)

    def list_events(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/events (``type`` with ``*`` wildcard, or ``types[]``)."""
        p = Params(raw)
        type_ = p.string("type")
        types = raw.get("types")
        wanted = set(types) if isinstance(types, list) else None
        return self.paginate(
            "event",
            "/v1/events",
            p,
            lambda o: (
                (type_ is None or _type_matches(o["type"], type_)) and (wanted is None or o["type"] in wanted)
            ),
        )

    # ------------------------------------------------------------------ disputes
    def retrieve_dispute(self, ctx: Context, raw: JSON, dp_id: str) -> JSON:
        """GET /v1/disputes/{id}."""
        return self.expand(self._get("dispute", dp_id), Params(raw).expand())

    def list_disputes(self, ctx: Context, raw: JSON) -> JSON:
        """GET /v1/disputes (``payment_intent``/``charge`` filters)."""
        p = Params(raw)
        pi_id = p.string("payment_intent")
        ch_id = p.string("charge")
        return self.paginate(
            "dispute",
            "/v1/disputes",
            p,
            lambda o: (
                (pi_id is None or o["payment_intent"] == pi_id) and (ch_id is None or o["charge"] == ch_id)
            ),
        )

    def create_dispute(self, ctx: Context, body: JSON) -> JSON:
        """Sandbox control: a cardholder disputes a captured charge; funds are withdrawn at once."""
        pi_id = body.get("payment_intent")
        if not isinstance(pi_id, str):
            raise invalid(
                "Missing required param: payment_intent.", param="payment_intent", code="parameter_missing"
            )
        pi = self._get("payment_intent", pi_id, "payment_intent")
        charge = self.store.get("charge", pi["latest_charge"] or "")
        if charge is None or not charge["captured"]:
            raise invalid("This PaymentIntent has no captured charge to dispute.", param="payment_intent")
        amount = body.get("amount")
        amount = charge["amount_captured"] - charge["amount_refunded"] if amount is None else amount
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise invalid("amount must be a positive integer", param="amount")
        reason = body.get("reason", "fraudulent")
        dp_id = new_id("dispute")
        txn = self._ledger(
            ctx,
            amount=-amount,
            currency=charge["currency"],
            type_="adjustment",
            source=dp_id,
            description=f"Chargeback withdrawal for {charge['id']}",
            reporting_category="dispute",
        )
        dispute: JSON = {
            "id": dp_id,
            "object": "dispute",
            "amount": amount,
            "balance_transactions": [copy.deepcopy(txn)],
            "charge": charge["id"],
            "created": now(),
            "currency": charge["currency"],
            "evidence": {},
            "evidence_details": {
                "due_by": now() + 7 * 86400,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            },
            "enhanced_eligibility_types": [],
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": pi_id,
            "payment_method_details": {
                "card": {
                    "brand": charge["payment_method_details"]["card"]["brand"],
                    "case_type": "chargeback",
                    "network_reason_code": "10.4",
                },
                "type": "card",
            },
            "reason": reason,
            "status": "needs_response",
        }
        self.store.put(dispute)
        charge["disputed"] = True
        self._emit(ctx, "charge.dispute.created", dispute)
        self._emit(ctx, "charge.dispute.funds_withdrawn", dispute)
        return dispute

    def close_dispute(self, ctx: Context, body: JSON, dp_id: str) -> JSON:
        """Sandbox control: the network decides; a won dispute reinstates the funds."""
        dispute = self._get("dispute", dp_id)
        status = body.get("status")
        if status not in ("won", "lost"):
            raise invalid("status must be 'won' or 'lost'", param="status")
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"Dispute {dp_id} is already closed.", param="status")
        dispute["status"] = status
        if status == "won":
            txn = self._ledger(
                ctx,
                amount=dispute["amount"],
                currency=dispute["currency"],
                type_="adjustment",
                source=dp_id,
                description=f"Chargeback reversal for {dispute['charge']}",
                reporting_category="dispute_reversal",
            )
            dispute["balance_transactions"].append(copy.deepcopy(txn))
            self._emit(ctx, "charge.dispute.funds_reinstated", dispute)
        self._emit(ctx, "charge.dispute.closed", dispute)
        return dispute


def _check_amount(amount: int, currency: str) -> None:
    minimum = MIN_CHARGE.get(currency, 1)
    if amount < minimum:
        raise invalid(
            f"Amount must be at least {minimum} {currency}", param="amount", code="amount_too_small"
        )
    if amount > 99_999_999:
        raise invalid("Amount must be no more than 99999999", param="amount", code="amount_too_large")


def _test_card(pm: str) -> TestCard:
    card = TEST_PAYMENT_METHODS.get(pm)
    if card is None:
        raise invalid(f"No such PaymentMethod: '{pm}'", param="payment_method", code="resource_missing")
    return card


def _created_matches(obj: JSON, created: Any) -> bool:
    if created is None:
        return True
    value = obj["created"]
    if isinstance(created, str):
        try:
            return bool(value == int(created))
        except ValueError:
            raise invalid(f"Invalid integer: {created}", param="created") from None
    if not isinstance(created, dict):
        raise invalid("Invalid created filter", param="created")
    checks: dict[str, Callable[[int, int], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for op, bound in created.items():
        if op not in checks:
            raise invalid(
                f"Received unknown parameter: created[{op}]", param=f"created[{op}]", code="parameter_unknown"
            )
        try:
            limit = int(bound)
        except (TypeError, ValueError):
            raise invalid(f"Invalid integer: {bound}", param=f"created[{op}]") from None
        if not checks[op](value, limit):
            return False
    return True


def _type_matches(actual: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return actual.startswith(pattern[:-1])
    return actual == pattern


def _default_currency(country: str) -> str:
    return {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "CH": "chf", "JP": "jpy"}.get(country, "eur")


def _no_requirements() -> JSON:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": [],
        "disabled_reason": None,
        "errors": [],
        "eventually_due": [],
        "past_due": [],
        "pending_verification": [],
    }


def _onboarding_requirements() -> JSON:
    """A new account's requirements while onboarding is pending (Stripe's example account)."""
    return {
        **_no_requirements(),
        "currently_due": list(ONBOARDING_FIELDS),
        "disabled_reason": "requirements.past_due",
        "eventually_due": list(ONBOARDING_FIELDS),
    }
