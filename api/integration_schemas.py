"""Request and response models of the integration routes: API keys, webhook endpoints, deliveries, the feed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    UrlConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from api.schemas import KEEP, PatchIn, example, keep
from bazaar.integrations.delivery import DeliveryStatus
from bazaar.integrations.endpoints import url_problem
from bazaar.integrations.events import EventGroup, EventType
from bazaar.integrations.models import ApiKey, Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from bazaar.integrations.scope import ScopeKind
from bazaar.json_types import JsonBool
from bazaar.settings import get_settings
from bazaar.text import refuse_control_characters, single_line

Name = Annotated[str, single_line(min_length=1, max_length=80)]


def _one_selector_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One error for a value that is neither an event type nor a group, naming the field's item alone (pydantic's
    union reports each member, with the enums' class names in `loc`)."""
    try:
        return handler(value)
    except ValidationError as exc:
        raise PydanticCustomError(
            "enum",
            "an event type (such as order.paid) or a group of them (such as order.*); '{value}' is neither",
            {"value": value},
        ) from exc


EventSelector = Annotated[EventType | EventGroup, WrapValidator(_one_selector_error)]


def _allowed(url: HttpUrl) -> str:
    problem = url_problem(str(url), get_settings().webhook_allow_local_urls)
    if problem is not None:
        raise PydanticCustomError("url_not_allowed", "the endpoint URL " + problem)
    return str(url)


# The check runs on the raw string: URL parsing would silently drop tabs and line breaks (WHATWG).
EndpointUrl = Annotated[
    HttpUrl,
    UrlConstraints(max_length=2048, allowed_schemes=["http", "https"]),
    refuse_control_characters(),
    AfterValidator(_allowed),
]
EventTypes = Annotated[
    list[EventSelector],
    Field(
        min_length=1,
        max_length=len(EventType) + len(EventGroup),
        description="the event types to deliver; a group (`order.*`) selects all of its types",
    ),
]
Description = Annotated[str, single_line(max_length=200)]


class ApiKeyIn(BaseModel):
    model_config = example({"name": "ERP sync"}, {"name": "Platform BI export", "scope": "platform"})
    name: Name = Field(description="what the key is for, to tell keys apart")
    scope: ScopeKind | None = Field(
        default=None,
        description="whose events the key reaches: `seller` (yours; needs the seller role) or `platform` (all; "
        "needs the support role). Default: seller if you sell, else platform",
    )


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    scope: ScopeKind
    prefix: str = Field(description="the key's first characters (the key itself is shown once, at creation)")
    created_at: datetime
    last_used_at: datetime | None = Field(
        description="when the key was last used, updated at most once a minute (it may lag by up to one)"
    )
    revoked_at: datetime | None = Field(
        description="null: a revoked key is no longer listed or found (kept for clients that read it)"
    )

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            scope=ScopeKind.PLATFORM if key.seller_id is None else ScopeKind.SELLER,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(
        description="the key, `bzk_...`, shown this once: send it as `Authorization: Bearer <key>`",
        examples=["bzk_0D7pX2gq1cR9vH4mN8sLkT3wY6zA5bE1fJ0uI2oP7xQ"],
    )


class WebhookEndpointIn(BaseModel):
    model_config = example(
        {
            "url": "https://erp.example.com/bazaar/webhooks",
            "event_types": ["order.*", "payout.sent"],
            "description": "ERP order sync",
        }
    )
    url: EndpointUrl = Field(
        description="https (http and local addresses only where WEBHOOK_ALLOW_LOCAL_URLS)"
    )
    event_types: EventTypes
    description: Description = ""
    enabled: JsonBool = True


class WebhookEndpointPatch(PatchIn):
    """Only the fields sent change; a field is left out to keep it, never null."""

    model_config = example({"enabled": True}, {"event_types": ["order.*", "dispute.*"]})
    url: EndpointUrl | None = KEEP
    event_types: EventTypes | None = KEEP
    description: Description | None = KEEP
    enabled: JsonBool | None = keep(
        description="false: the endpoint gets no deliveries of events that happen while it is disabled (the "
        "feed, GET /v1/events, has them all) and its pending ones wait; true resumes those pending ones",
    )


class WebhookEndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[EventSelector]
    enabled: bool
    disabled_reason: str | None = Field(
        description="why it is disabled: by its owner, or its deliveries failed"
    )
    scope: ScopeKind
    previous_secret_expires_at: datetime | None = Field(
        description="after a rotation: until then deliveries are signed with the previous secret too"
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookEndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=[_selector(t) for t in endpoint.event_types],
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            scope=ScopeKind.PLATFORM if endpoint.seller_id is None else ScopeKind.SELLER,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


def _selector(value: str) -> EventSelector:
    return EventGroup(value) if value.endswith(".*") else EventType(value)


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret: str = Field(
        description="the signing secret (Standard Webhooks, `whsec_...`), shown at creation and rotation only",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class SecretOut(BaseModel):
    secret: str = Field(
        description="the new signing secret, `whsec_...`", examples=["whsec_MfKQ9r8GKYqrTwjU"]
    )
    previous_secret_expires_at: datetime = Field(
        description="until then deliveries carry a signature with the previous secret too"
    )


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    attempted_at: datetime = Field(description="when the request went out")
    status_code: int | None = Field(description="the endpoint's answer; null when there was none")
    duration_ms: int
    error: str | None = Field(description="why it failed: the status, a timeout, a refused connection, ...")
    response_body: str | None = Field(description="the start of the endpoint's answer")


class DeliveryOut(BaseModel):
    id: int
    event_id: int
    event_type: EventType
    status: DeliveryStatus
    next_attempt_at: datetime | None = Field(
        description="while pending: when it is tried next (while an attempt is on its way: when that attempt's "
        "lease ends, after which it is tried again should its sender have died)"
    )
    created_at: datetime
    delivered_at: datetime | None = Field(description="when an endpoint last took it (2xx)")
    attempts: list[AttemptOut] = Field(description="every attempt, oldest first")

    @classmethod
    def of(cls, delivery: WebhookDelivery, event_type: str, attempts: list[WebhookAttempt]) -> DeliveryOut:
        return cls(
            id=delivery.id,
            event_id=delivery.event_id,
            event_type=EventType(event_type),
            status=DeliveryStatus(delivery.status),
            next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None,
            created_at=delivery.created_at,
            delivered_at=delivery.delivered_at,
            attempts=[AttemptOut.model_validate(a) for a in attempts],
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: int | None = Field(
        description="pass as `before` for older deliveries; null on the last page"
    )


class EventOut(BaseModel):
    """An event, as the feed lists it and a webhook delivers it (its body)."""

    id: int = Field(description="the event's id: pass the last one you got as `after`")
    type: EventType
    timestamp: datetime = Field(description="when it happened")
    data: dict[str, Any] = Field(
        description="the object in a compact form: `object` (order, listing, review, dispute, payout), its "
        "`id` (a payout: `order_id`), its status and amounts. An order's also has `lines` (each `listing_id`, "
        "`listing_title`, `quantity`, `unit_amount`, `refunded_quantity`) and `refunded_amount`; a payout's "
        "`amount` is what was sent, or, held or failed, what is due",
        examples=[{"object": "order", "id": "2f6c1f9e-8d1b-4a53-9f57-4d3f5c1d2a10", "status": "paid"}],
    )

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(id=event.id, type=EventType(event.type), timestamp=event.occurred_at, data=event.data)


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: int | None = Field(
        description="pass as `after` for the next page, now or later (the last event's id; your `after` when "
        "there was none)"
    )
    has_more: bool = Field(description="more events are there now: ask again at once")
