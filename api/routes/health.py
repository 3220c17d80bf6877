"""Liveness, readiness (PostgreSQL, Temporal, Meilisearch) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api import metrics
from api.deps import MeiliClient, Session, Temporal
from bazaar.errors import DomainError, ErrorCode
from bazaar.settings import get_settings

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
async def metrics_endpoint(session: Session, temporal: Temporal, request: Request) -> Response:
    """Who may call: Prometheus with METRICS_TOKEN, or (when no token is configured) loopback clients only."""
    token = get_settings().metrics_token
    if token is not None:
        if not secrets.compare_digest(
            request.headers.get("authorization", ""), f"Bearer {token.get_secret_value()}"
        ):
            raise DomainError(ErrorCode.NOT_AUTHENTICATED, "metrics need the METRICS_TOKEN bearer token")
    elif request.client is None or request.client.host not in ("127.0.0.1", "::1"):
        raise DomainError(ErrorCode.FORBIDDEN, "metrics are served to loopback clients only")
    return Response(await metrics.render(session, temporal), media_type=CONTENT_TYPE_LATEST)
