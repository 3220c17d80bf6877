"""The support console: server-rendered pages (Jinja2) with htmx for support staff, at /console.

Same accounts and sessions as the API (`api.console.session`: cookies, CSRF), same rules: every action calls the
function the REST route calls (`api.console.actions`), and is audited with the acting support user. Reads reuse the
REST handlers where one exists (`api.console.pages`). Nothing here is in the OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.console.session import PREFIX, CsrfRejected, LoginRequired
from bazaar.payments.money import format_money
from bazaar.settings import get_settings

HERE = Path(__file__).resolve().parent
# The vendored htmx (npm `htmx.org`, static/NOTICE.md): its version and checksum, checked by a test.
HTMX_VERSION = "2.0.11"
HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
# Pages load only our own scripts and styles; forms post only to us; never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

templates = Jinja2Templates(directory=str(HERE / "templates"))


def temporal_url(workflow_id: str) -> str:
    """The workflow's page in the Temporal UI (TEMPORAL_UI_URL)."""
    settings = get_settings()
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal_namespace)}/workflows/{quote(workflow_id)}"


def money(amount: int | None, currency: str | None) -> str:
    return format_money(amount, currency) if amount is not None and currency else ""


templates.env.globals.update(temporal_url=temporal_url, money=money, htmx_version=HTMX_VERSION)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": getattr(request.state, "console_csrf", ""), **context},
        status_code=status_code,
    )
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


def install(app: FastAPI) -> None:
    """Mount the console on `app`: its pages and actions, its static files, and its redirects."""
    from api.console import actions, pages  # the routes import this module's helpers

    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = f"{PREFIX}/login" + (f"?next={exc.next_path}" if exc.next_path else "")
        if request.headers.get("HX-Request"):  # htmx: a full-page redirect, not a swapped fragment
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(CsrfRejected)
    async def csrf_rejected(request: Request, exc: CsrfRejected) -> Response:
        return render(
            request,
            "error.html",
            status_code=403,
            message="This form has expired or did not come from the console: reload the page and try again.",
        )
