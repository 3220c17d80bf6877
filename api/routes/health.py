"""Liveness, readiness (PostgreSQL, Temporal, Meilisearch) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import enum
import secrets
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from sqlalchemy import text

from api import metrics
from api.deps import MeiliClient, Session, Temporal
from api.openapi import errors
from bazaar.errors import DomainError, ErrorCode
from bazaar.settings import get_settings

router = APIRouter(tags=["health"])

# Prometheus' scrape credential, its own scheme in the document (not a user's access token).
MetricsToken = Annotated[
    HTTPAuthorizationCredentials | None,
    Depends(
        HTTPBearer(
            auto_error=False,
            scheme_name="MetricsToken",
            description="METRICS_TOKEN; without one configured, /metrics answers loopback clients only",
        )
    ),
]


class HealthOut(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyChecks(BaseModel):
    postgres: bool
    temporal: bool
    meilisearch: bool


class ReadyStatus(enum.StrEnum):
    READY = "ready"
    NOT_READY = "not_ready"


class ReadyOut(BaseModel):
    status: ReadyStatus
    checks: ReadyChecks


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """Liveness: the API process answers (checks no dependency; /readyz does)."""
    return HealthOut()


@router.get(
    "/readyz",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "a dependency is down (`checks` says which)"}},
)
async def readyz(session: Session, temporal: Temporal, meili: MeiliClient) -> JSONResponse:
    """Readiness: PostgreSQL, Temporal and Meilisearch each answer within 3 s (503 naming the one that does not)."""

    async def postgres() -> bool:
        await session.execute(text("SELECT 1"))
        return True

    async def temporal_ok() -> bool:
        await temporal.service_client.check_health(timeout=timedelta(seconds=2))
        return True

    checks: dict[str, bool] = {}
    for name, probe in (("postgres", postgres), ("temporal", temporal_ok), ("meilisearch", meili.healthy)):
        try:
            checks[name] = bool(await asyncio.wait_for(probe(), timeout=3))
        except Exception:
            checks[name] = False
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        },
        **errors(ErrorCode.FORBIDDEN),
    },
)
async def get_metrics(
    session: Session, temporal: Temporal, request: Request, credentials: MetricsToken
) -> Response:
    """Who may call: Prometheus with METRICS_TOKEN, or (when no token is configured) loopback clients only."""
    token = get_settings().metrics_token
    if token is not None:
        sent = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(sent.encode(), token.get_secret_value().encode()):
            raise DomainError(ErrorCode.NOT_AUTHENTICATED, "metrics need the METRICS_TOKEN bearer token")
    elif request.client is None or request.client.host not in ("127.0.0.1", "::1"):
        raise DomainError(ErrorCode.FORBIDDEN, "metrics are served to loopback clients only")
    return Response(await metrics.render(session, temporal), media_type=CONTENT_TYPE_LATEST)
