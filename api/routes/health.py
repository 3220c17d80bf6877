"""Liveness, readiness (PostgreSQL, Temporal, Meilisearch) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api import metrics
from api.deps import MeiliClient, Session, Temporal

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is down"}})
async def readyz(session: Session, temporal: Temporal, meili: MeiliClient) -> JSONResponse:
    async def postgres() -> bool:
        await session.execute(text("SELECT 1"))
        return True

    async def temporal_ok() -> bool:
        await temporal.service_client.check_health(timeout=timedelta(seconds=2))
        return True

    checks: dict[str, Any] = {}
    for name, probe in (("postgres", postgres), ("temporal", temporal_ok), ("meilisearch", meili.healthy)):
        try:
            checks[name] = bool(await asyncio.wait_for(probe(), timeout=3))
        except Exception:
            checks[name] = False
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(session: Session, request: Request) -> Response:
    return Response(await metrics.render(session), media_type=CONTENT_TYPE_LATEST)
