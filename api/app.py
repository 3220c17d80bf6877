"""The REST API: a thin FastAPI facade over the domain and the workflows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.listing_runtime import listing_runtime
from api.routes import (
    auth,
    disputes,
    health,
    listings,
    notifications,
    order_actions,
    orders,
    payouts,
    search,
    trust,
    webhooks,
)
from bazaar.db import get_engine
from bazaar.settings import get_settings
from bazaar.temporal import connect


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    settings.require("jwt_secret")  # fail at start, not at the first login
    app.state.temporal = await connect(settings)
    async with listing_runtime(app, settings):  # search (search-only key), hot cache, view counts
        yield
    await get_engine().dispose()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Bazaar",
        version="0.1.0",
        description=(
            "Two-sided marketplace: listings, search, durable orders with escrowed payments, reviews, "
            "reputation, disputes and notifications."
        ),
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (
        health,
        auth,
        payouts,
        listings,
        search,
        orders,
        order_actions,
        disputes,
        trust,
        notifications,
        webhooks,
    ):
        app.include_router(module.router)
    app.include_router(orders.support_router)
    return app


app = create_app()
