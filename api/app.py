"""The REST API: a thin FastAPI facade over the domain and the workflows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import console, deps, errors, methods, openapi, ratelimits, search_direct, security, telemetry
from api.listing_runtime import listing_runtime
from api.routes import (
    auth,
    cart,
    checkouts,
    disputes,
    health,
    integrations,
    listings,
    notifications,
    order_actions,
    orders,
    payouts,
    reconciliation,
    returns,
    search,
    trust,
    webhooks,
)
from bazaar.db import get_engine
from bazaar.settings import get_settings
from bazaar.telemetry import flush as flush_spans
from bazaar.temporal import connect


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    settings.require("jwt_secret")  # fail at start, not at the first login
    telemetry.configure_api_logging()  # log lines with the request's trace id
    app.state.temporal = await connect(settings)
    # search (search-only key), hot cache, view counts; request limits (shared counters in PostgreSQL)
    async with listing_runtime(app, settings), ratelimits.runtime(app):
        yield
    await get_engine().dispose()
    flush_spans()  # before uvicorn re-raises the stop signal, which skips the exit handlers


# One tag per resource, in the order a client's docs should list them.
TAGS = [
    {"name": "auth", "description": "Accounts and access tokens (OAuth2 password flow)"},
    {"name": "users", "description": "Public profiles: reputation and reviews"},
    {"name": "payouts", "description": "A seller's payout account and balance"},
    {"name": "categories", "description": "The category taxonomy"},
    {
        "name": "listings",
        "description": "Listings: sellers write them (ETag/If-Match), everyone reads active ones",
    },
    {"name": "search", "description": "Full-text, faceted and geo search of active listings"},
    {"name": "cart", "description": "The buyer's cart: lines from one or more sellers, checked out at once"},
    {"name": "checkouts", "description": "A cart paid in one charge: one order per seller"},
    {"name": "orders", "description": "Orders and their actions: each one a durable workflow"},
    {"name": "returns", "description": "Returns of a delivered order's lines, and their refunds"},
    {"name": "disputes", "description": "A disputed order's case: the thread and support's questions"},
    {"name": "reviews", "description": "Reviews of a completed order, both ways"},
    {"name": "notifications", "description": "The inbox, preferences and one-click unsubscribe"},
    {"name": "support", "description": "Support staff's queues and tools"},
    {"name": "webhooks", "description": "Events from the payment provider"},
    {
        "name": "integrations",
        "description": "For apps: API keys, webhook endpoints and their deliveries, and the events feed",
    },
    {"name": "health", "description": "Liveness, readiness and metrics"},
]


def create_app() -> FastAPI:
    app = FastAPI(
        title="Bazaar",
        version="0.1.0",
        description=(
            "Two-sided marketplace: listings, search, durable orders with escrowed payments, reviews, "
            "reputation, disputes and notifications. The conventions (errors, idempotency, ETags, "
            "pagination, rate limits, 202 and Location, versioning) are in docs/api.md."
        ),
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=openapi.operation_id,
        # A path the document does not have is a 404 (docs/api.md), not a 307 to the path without its slash
        # (whose Location would echo the request's Host header).
        redirect_slashes=False,
        dependencies=[Depends(deps.one_value_each)],
    )
    # Innermost middleware first: a body over 1 MiB is refused (413) where the route reads it.
    security.limit_bodies(app)
    search_direct.install(app)  # plain searches answered before routing
    methods.install(app)  # HEAD answered as GET without the body
    errors.install(app)
    ratelimits.install(app)  # 429 with Retry-After
    security.install(app)  # security headers (+ RateLimit headers) on every response, errors included
    telemetry.install(app)  # traces, X-Trace-Id, request metrics (outermost: sees every response's status)
    openapi.install(app)
    for module in (
        health,
        auth,
        payouts,
        listings,
        search,
        cart,
        checkouts,
        orders,
        order_actions,
        returns,
        disputes,
        trust,
        notifications,
        webhooks,
    ):
        app.include_router(module.router)
    app.include_router(listings.categories_router)
    app.include_router(orders.support_router)
    app.include_router(notifications.support_router)
    app.include_router(reconciliation.router)
    app.include_router(reconciliation.support_router)
    app.include_router(integrations.router)
    app.webhooks.include_router(integrations.outgoing)
    console.install(app)  # the support console at /console (HTML pages, not in the OpenAPI document)
    return app


app = create_app()
