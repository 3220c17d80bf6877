"""Integrations: API keys for apps, webhook endpoints with their deliveries, and the events feed
(bazaar/integrations; README, "Integrations: webhooks and the events feed").

API keys are managed by signed-in users (a key never makes another key). The other routes take an API key
(`Authorization: Bearer bzk_...`) or a user's access token, and act in that caller's scope (`api.deps.integrator`):
another scope's endpoint is not found.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from api.deps import Caller, Integrator, Session
from api.integration_schemas import (
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    DeliveryOut,
    DeliveryPage,
    EventOut,
    EventPage,
    SecretOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatch,
)
from api.openapi import LOCATION, errors, merge
from bazaar.errors import DomainError, ErrorCode
from bazaar.integrations import delivery, endpoints, feed, keys
from bazaar.integrations.delivery import DeliveryStatus
from bazaar.integrations.scope import Scope, ScopeKind, for_user
from bazaar.models import Role
from bazaar.settings import get_settings

router = APIRouter(prefix="/v1", tags=["integrations"])
# What Bazaar sends (the document's `webhooks`, OpenAPI 3.1): not an operation of this API but one of yours.
outgoing = APIRouter(tags=["integrations"])


@outgoing.post("event", operation_id="receiveEvent", status_code=204)
def receive_event(
    event: EventOut,
    webhook_id: Annotated[
        str,
        Header(alias="webhook-id", description="`evt_<id>`: the same on every attempt and replay (dedupe)"),
    ],
    webhook_timestamp: Annotated[
        int,
        Header(alias="webhook-timestamp", description="seconds since the epoch when this attempt was signed"),
    ],
    webhook_signature: Annotated[
        str,
        Header(
            alias="webhook-signature",
            description="space-separated `v1,<base64 HMAC-SHA256>`, one per secret of the endpoint (two while "
            "a rotation's old secret lasts), over `<webhook-id>.<webhook-timestamp>.<body>`",
        ),
    ],
) -> None:
    """What Bazaar POSTs to each of your webhook endpoints for an event of a type it subscribed to, signed as the
    Standard Webhooks specification says (verify with a `standardwebhooks` library and the endpoint's secret).
    Answer any 2xx to take it; anything else, a redirect or no answer in time is retried for about three days
    (5 s, 5 min, 30 min, 2 h, 5 h, then every 10 h), after which the endpoint is disabled and its owner told.
    Sent at least once: deduplicate on `webhook-id`."""


# Ids are BIGINT: a larger number is a 422, never a database overflow (500).
INT64_MAX = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=INT64_MAX)]
# The integration routes take an access token or an API key, both bearer tokens: the document says the bearer
# scheme is required (api.deps.integrator reads the header itself), and lists the 401 and 403.
KEY_OR_TOKEN: dict[str, Any] = {"security": [{"OAuth2PasswordBearer": []}]}
INTEGRATOR_ERRORS = errors(ErrorCode.NOT_AUTHENTICATED, ErrorCode.FORBIDDEN)


# -------------------------------------------------------------------------------------------------- API keys


def _scopes(caller: Caller) -> list[Scope]:
    """The scopes a signed-in user manages keys of: their seller scope, the platform's (support), or both."""
    found = [for_user(caller, ScopeKind.SELLER)] if Role.SELLER.value in caller.roles else []
    if caller.has(Role.SUPPORT):
        found.append(for_user(caller, ScopeKind.PLATFORM))
    if not found:
        raise DomainError(ErrorCode.FORBIDDEN, "API keys are for sellers and support staff")
    return found


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreatedOut,
    responses=merge(
        {201: {"description": "the key, shown this once", "headers": LOCATION}}, errors(ErrorCode.FORBIDDEN)
    ),
)
async def create_api_key(
    body: ApiKeyIn, caller: Caller, session: Session, response: Response
) -> ApiKeyCreatedOut:
    """A key for an app, in your seller scope or (support) the platform's. The key is in this answer only:
    store it now. It authenticates the integration routes (webhook endpoints, the events feed) and nothing else."""
    row, key = await keys.create(session, for_user(caller, body.scope), body.name)
    response.headers["Location"] = f"/v1/api-keys/{row.id}"
    return ApiKeyCreatedOut(**ApiKeyOut.of(row).model_dump(), key=key)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=errors(ErrorCode.FORBIDDEN))
async def list_api_keys(caller: Caller, session: Session) -> list[ApiKeyOut]:
    """Your scopes' keys, newest first, without the keys themselves (a revoked key is gone)."""
    return [ApiKeyOut.of(row) for row in await keys.list_keys(session, _scopes(caller))]


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut, responses=errors(ErrorCode.FORBIDDEN))
async def get_api_key(key_id: uuid.UUID, caller: Caller, session: Session) -> ApiKeyOut:
    """One key of your scopes, without the key itself; 404 once it is revoked."""
    return ApiKeyOut.of(await keys.get(session, _scopes(caller), key_id))


@router.delete(
    "/api-keys/{key_id}", status_code=204, response_class=Response, responses=errors(ErrorCode.FORBIDDEN)
)
async def revoke_api_key(key_id: uuid.UUID, caller: Caller, session: Session) -> None:
    """Revoke (delete) a key: from the next request on it is refused (401), and it is no longer listed or found
    (404, revoking it again too)."""
    await keys.revoke(session, _scopes(caller), key_id)


# --------------------------------------------------------------------------------------- webhook endpoints


@router.post(
    "/webhook-endpoints",
    status_code=201,
    response_model=WebhookEndpointCreatedOut,
    responses=merge(
        {201: {"description": "the endpoint and its signing secret", "headers": LOCATION}},
        INTEGRATOR_ERRORS,
        errors(ErrorCode.WEBHOOK_ENDPOINTS_FULL),
    ),
    openapi_extra=KEY_OR_TOKEN,
)
async def create_webhook_endpoint(
    body: WebhookEndpointIn, caller: Integrator, session: Session, response: Response
) -> WebhookEndpointCreatedOut:
    """Deliver the chosen events of your scope to `url`, signed with the secret in this answer (Standard
    Webhooks: verify `webhook-signature` with it). Shown again only by rotating it."""
    endpoint = await endpoints.create(
        session, caller, str(body.url), [str(t) for t in body.event_types], body.description, body.enabled
    )
    response.headers["Location"] = f"/v1/webhook-endpoints/{endpoint.id}"
    return WebhookEndpointCreatedOut(**WebhookEndpointOut.of(endpoint).model_dump(), secret=endpoint.secret)


@router.get(
    "/webhook-endpoints",
    response_model=list[WebhookEndpointOut],
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def list_webhook_endpoints(caller: Integrator, session: Session) -> list[WebhookEndpointOut]:
    """Your scope's webhook endpoints, without their secrets."""
    return [WebhookEndpointOut.of(e) for e in await endpoints.list_endpoints(session, caller)]


@router.get(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def get_webhook_endpoint(
    endpoint_id: uuid.UUID, caller: Integrator, session: Session
) -> WebhookEndpointOut:
    """One webhook endpoint of your scope, without its secret."""
    return WebhookEndpointOut.of(await endpoints.get(session, caller, endpoint_id))


@router.patch(
    "/webhook-endpoints/{endpoint_id}",
    response_model=WebhookEndpointOut,
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def update_webhook_endpoint(
    endpoint_id: uuid.UUID, body: WebhookEndpointPatch, caller: Integrator, session: Session
) -> WebhookEndpointOut:
    """Change the URL, the event types, the description, or enable it again (its pending deliveries resume)."""
    endpoint = await endpoints.update(
        session,
        caller,
        endpoint_id,
        url=str(body.url) if body.url is not None else None,
        event_types=[str(t) for t in body.event_types] if body.event_types is not None else None,
        description=body.description,
        enabled=body.enabled,
    )
    return WebhookEndpointOut.of(endpoint)


@router.delete(
    "/webhook-endpoints/{endpoint_id}",
    status_code=204,
    response_class=Response,
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def delete_webhook_endpoint(endpoint_id: uuid.UUID, caller: Integrator, session: Session) -> None:
    """Delete the endpoint, its deliveries and their log."""
    await endpoints.delete(session, caller, endpoint_id)


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    response_model=SecretOut,
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def rotate_webhook_secret(endpoint_id: uuid.UUID, caller: Integrator, session: Session) -> SecretOut:
    """A new signing secret. Until `previous_secret_expires_at` (`WEBHOOK_SECRET_OVERLAP_SECONDS` from now, 24 h
    by default) deliveries carry a signature with each secret, so the receiver can switch at its own pace. Two
    secrets sign at most: rotating again within the overlap ends the older secret at once (the one before the
    secret being replaced; a second rotation is what follows a leak), and the previous one overlaps anew."""
    overlap = timedelta(seconds=get_settings().webhook_secret_overlap_seconds)
    endpoint = await endpoints.rotate_secret(session, caller, endpoint_id, overlap)
    assert endpoint.previous_secret_expires_at is not None
    return SecretOut(secret=endpoint.secret, previous_secret_expires_at=endpoint.previous_secret_expires_at)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    response_model=DeliveryPage,
    responses=INTEGRATOR_ERRORS,
    openapi_extra=KEY_OR_TOKEN,
)
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    caller: Integrator,
    session: Session,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with every attempt: status code, duration, error and the
    start of the answer."""
    await endpoints.get(session, caller, endpoint_id)
    rows, next_cursor = await delivery.deliveries(session, endpoint_id, status, limit, before)
    return DeliveryPage(
        items=[DeliveryOut.of(d, event_type, attempts) for d, event_type, attempts in rows],
        next_cursor=next_cursor,
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryOut,
    responses=merge({202: {"description": "queued: the sender delivers it again"}}, INTEGRATOR_ERRORS),
    openapi_extra=KEY_OR_TOKEN,
)
async def replay_webhook_delivery(
    endpoint_id: uuid.UUID, delivery_id: RowId, caller: Integrator, session: Session
) -> DeliveryOut:
    """Send a delivery again (delivered or failed alike), with the same `webhook-id`, and a fresh retry
    schedule. A disabled endpoint gets it once it is enabled again."""
    await endpoints.get(session, caller, endpoint_id)
    await delivery.replay(session, endpoint_id, delivery_id)
    return DeliveryOut.of(*await delivery.one(session, delivery_id))


# ----------------------------------------------------------------------------------------------- the feed


@router.get("/events", response_model=EventPage, responses=INTEGRATOR_ERRORS, openapi_extra=KEY_OR_TOKEN)
async def list_events(
    caller: Integrator,
    session: Session,
    after: Annotated[
        int | None,
        Query(ge=0, le=INT64_MAX, description="the id of the last event you got (0 or none: from the first)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=feed.MAX_PAGE)] = 100,
) -> EventPage:
    """Your scope's events, each exactly once, in order (the order of the transactions that wrote them), for apps
    that poll instead of receiving webhooks. Keep the last id and pass it as `after`: events that commit later
    come after it, never before."""
    found = await feed.page(session, caller, after, limit)
    return EventPage(
        items=[EventOut.of(e) for e in found.events],
        next_cursor=found.events[-1].id if found.events else after,
        has_more=found.more,
    )
