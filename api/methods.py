"""Which methods a path answers: HEAD wherever GET is (RFC 9110 9.1: a general-purpose server supports both),
and a 405's `Allow` naming every method of the path, as the OpenAPI document lists them."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """A HEAD request is the GET without its body: routed, authorised and answered as the GET (same status and
    headers, Content-Length included), the body dropped. FastAPI's routes answer the methods they name only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


def allowed_methods(request: Request, named: str) -> str:
    """Every method the document gives the request's path (405's `Allow`), HEAD with GET. Starlette names only
    those of the first route whose path matched (`named`), and each method of a path is a route of its own
    here. A path the document does not have (the sandbox's, the console's) keeps Starlette's answer."""
    paths: dict[str, Any] = request.app.openapi()["paths"]
    path = request.url.path
    if path in paths:  # a literal path wins over a template that also matches it, as in routing
        methods = {m.upper() for m in paths[path]}
    else:
        methods = {
            m.upper()
            for template, operations in paths.items()
            if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path)
            for m in operations
        }
    if not methods:
        return named
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Outside the plain-search shortcut (api/search_direct.py), which answers GETs before routing."""
    app.add_middleware(HeadAsGetMiddleware)
