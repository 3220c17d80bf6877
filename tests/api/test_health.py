"""/metrics: who may scrape it. Prometheus sends METRICS_TOKEN as a bearer token; with none configured only
loopback clients may (the stack's API sets none, so the token's side is checked here, in process)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import SecretStr

from api import metrics as api_metrics
from api.app import app
from api.routes import health
from bazaar.errors import DomainError, ErrorCode
from bazaar.settings import Settings


def _request(host: str) -> Any:
    return SimpleNamespace(client=SimpleNamespace(host=host))


def _bearer(token: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Stands in for the exposition (it reads PostgreSQL and Temporal): records each scrape that got through."""
    scrapes: list[int] = []

    async def render(session: Any, temporal: Any) -> bytes:
        scrapes.append(1)
        return b"bazaar_up 1\n"

    monkeypatch.setattr(api_metrics, "render", render)
    return scrapes


def _configure(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    settings = Settings(metrics_token=SecretStr(token) if token else None)
    monkeypatch.setattr(health, "get_settings", lambda: settings)


async def test_with_a_token_configured_only_that_bearer_token_scrapes(
    monkeypatch: pytest.MonkeyPatch, rendered: list[int]
) -> None:
    _configure(monkeypatch, "s3cret-scrape")
    for sent in (None, _bearer("wrong"), _bearer("s3cret-scrape-and-more"), _bearer("")):
        with pytest.raises(DomainError) as refused:
            await health.get_metrics(None, None, _request("127.0.0.1"), sent)  # type: ignore[arg-type]
        assert refused.value.code == ErrorCode.NOT_AUTHENTICATED
    assert rendered == []
    answer = await health.get_metrics(None, None, _request("10.1.2.3"), _bearer("s3cret-scrape"))  # type: ignore[arg-type]
    assert answer.status_code == 200 and answer.body == b"bazaar_up 1\n"
    assert rendered == [1]


async def test_without_a_token_only_loopback_clients_scrape(
    monkeypatch: pytest.MonkeyPatch, rendered: list[int]
) -> None:
    _configure(monkeypatch, None)
    with pytest.raises(DomainError) as refused:
        await health.get_metrics(None, None, _request("10.1.2.3"), _bearer("anything"))  # type: ignore[arg-type]
    assert refused.value.code == ErrorCode.FORBIDDEN
    for loopback in ("127.0.0.1", "::1"):
        answer = await health.get_metrics(None, None, _request(loopback), None)  # type: ignore[arg-type]
        assert answer.status_code == 200
    assert rendered == [1, 1]


def test_the_document_names_the_scrape_token_as_its_own_optional_scheme() -> None:
    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["MetricsToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer"), scheme
    operation = doc["paths"]["/metrics"]["get"]
    assert operation["security"] == [{}, {"MetricsToken": []}], operation["security"]
    assert {"401", "403"} <= operation["responses"].keys()
