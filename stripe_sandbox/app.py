"""HTTP layer of the sandbox: auth, routing, idempotency keys, fault injection, persistence, webhooks.

Built on Starlette so it can run under uvicorn as its own process or be embedded
in tests via :func:`create_app`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from stripe_sandbox.engine import DEFAULT_API_VERSION, JSON, NEW_ACCOUNT_MODES, Context, Engine
from stripe_sandbox.errors import StripeError, invalid
from stripe_sandbox.forms import FormError, parse_form
from stripe_sandbox.state import Store, new_id
from stripe_sandbox.webhooks import WebhookDispatcher

log = logging.getLogger("stripe_sandbox")

MAX_IDEMPOTENCY_KEY_LENGTH = 255
HANG_SECONDS = 120.0
DROP_SCOPE_KEY = "stripe_sandbox.drop_response"
FAULT_MODES = ("error", "hang", "drop_response")

Handler = Callable[..., JSON]


@dataclass
class Fault:
    """An injected failure for the next ``count`` matching ``/v1`` calls."""

    mode: str
    count: int
    path_prefix: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        return (
            self.count > 0
            and (self.method is None or self.method.upper() == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
        )


@dataclass(frozen=True)
class ApiRoute:
    """One ``/v1`` endpoint: method, path pattern, engine method name, whether it mutates."""

    method: str
    pattern: re.Pattern[str]
    handler: str

    @property
    def mutating(self) -> bool:
        """POSTs change state (and are the only requests idempotency keys apply to)."""
        return self.method == "POST"


_ID = r"([A-Za-z0-9_]+)"


def _r(method: str, path: str, handler: str) -> ApiRoute:
    return ApiRoute(method, re.compile("^" + path.replace("{id}", _ID) + "$"), handler)


API_ROUTES: tuple[ApiRoute, ...] = (
    _r("POST", "/v1/payment_intents", "create_payment_intent"),
    _r("GET", "/v1/payment_intents", "list_payment_intents"),
    _r("GET", "/v1/payment_intents/{id}", "retrieve_payment_intent"),
    _r("POST", "/v1/payment_intents/{id}/confirm", "confirm_payment_intent"),
    _r("POST", "/v1/payment_intents/{id}/capture", "capture_payment_intent"),
    _r("POST", "/v1/payment_intents/{id}/cancel", "cancel_payment_intent"),
    _r("GET", "/v1/charges", "list_charges"),
    _r("GET", "/v1/charges/{id}", "retrieve_charge"),
    _r("POST", "/v1/refunds", "create_refund"),
    _r("GET", "/v1/refunds", "list_refunds"),
    _r("GET", "/v1/refunds/{id}", "retrieve_refund"),
    _r("POST", "/v1/accounts", "create_account"),
    _r("GET", "/v1/accounts/{id}", "retrieve_account"),
    _r("POST", "/v1/account_links", "create_account_link"),
    _r("POST", "/v1/transfers", "create_transfer"),
    _r("GET", "/v1/transfers", "list_transfers"),
    _r("GET", "/v1/transfers/{id}", "retrieve_transfer"),
    _r("POST", "/v1/transfers/{id}/reversals", "create_reversal"),
    _r("GET", "/v1/transfers/{id}/reversals", "list_reversals"),
    _r("GET", "/v1/balance", "retrieve_balance"),
    _r("GET", "/v1/balance_transactions", "list_balance_transactions"),
    _r("GET", "/v1/balance_transactions/{id}", "retrieve_balance_transaction"),
    _r("GET", "/v1/events", "list_events"),
    _r("GET", "/v1/events/{id}", "retrieve_event"),
    _r("GET", "/v1/disputes", "list_disputes"),
    _r("GET", "/v1/disputes/{id}", "retrieve_dispute"),
)


class Sandbox:
    """Mutable server state shared by all requests of one app instance."""

    def __init__(
        self,
        state_file: str | None,
        webhook_url: str | None,
        webhook_secret: str | None,
        new_accounts: str = "onboarded",
    ) -> None:
        self.store = Store(state_file)
        self.dispatcher = (
            WebhookDispatcher(webhook_url, webhook_secret or "whsec_sandbox") if webhook_url else None
        )
        self.new_accounts = new_accounts  # what /_sandbox/reset returns to
        self.engine = Engine(
            self.store, webhooks_enabled=self.dispatcher is not None, new_accounts=new_accounts
        )
        self.faults: list[Fault] = []
        self.inflight: set[str] = set()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one matching fault, if any."""
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def commit(self, ctx: Context) -> None:
        """Persist state and hand new events to the webhook dispatcher."""
        self.store.save()
        if self.dispatcher is not None:
            for event in ctx.events:
                self.dispatcher.dispatch(event)


def _error_response(err: StripeError, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _api_key(request: Request) -> str:
    """Extract and check the secret key (Bearer, or Basic with the key as user like ``curl -u``)."""
    header = request.headers.get("authorization", "")
    key = ""
    if header.lower().startswith("bearer "):
        key = header[7:].strip()
    elif header.lower().startswith("basic "):
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            key = base64.b64decode(header[6:].strip()).decode().split(":", 1)[0]
    if not key:
        raise StripeError(
            401,
            "invalid_request_error",
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    if not key.startswith("sk_test_") or len(key) <= len("sk_test_"):
        masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
        raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")
    return key


def _fingerprint(method: str, path: str, params: JSON) -> str:
    return json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))


async def _hang(request: Request) -> None:
    """Sleep far past any client timeout; cancellable, and ends early once the client is gone."""
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if await request.is_disconnected():
            return


def _make_api_endpoint(sb: Sandbox) -> Callable[[Request], Any]:
    async def api(request: Request) -> Response:
        """Dispatch one ``/v1`` call through auth, faults, idempotency and the engine."""
        request_id = new_id("request")
        method = request.method
        path = request.url.path
        idem_key = request.headers.get("idempotency-key") if method == "POST" else None
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version", DEFAULT_API_VERSION),
        }
        if idem_key is not None:
            headers["Idempotency-Key"] = idem_key
        try:
            api_key = _api_key(request)
        except StripeError as auth_err:
            return _error_response(auth_err, {**headers, "WWW-Authenticate": 'Bearer realm="Stripe"'})

        fault = sb.take_fault(method, path)
        if fault is not None and fault.mode == "error":
            error = StripeError(
                500, "api_error", "An unknown error occurred (injected by the Stripe sandbox)."
            )
            return _error_response(error, headers)
        if fault is not None and fault.mode == "hang":
            await _hang(request)
            return _error_response(StripeError(500, "api_error", "Request hung (sandbox fault)."), headers)
        if fault is not None and fault.mode == "drop_response":
            request.scope[DROP_SCOPE_KEY] = True

        route: ApiRoute | None = None
        ids: tuple[str, ...] = ()
        for candidate in API_ROUTES:
            match = candidate.pattern.match(path)
            if match and candidate.method == method:
                route, ids = candidate, match.groups()
                break
        if route is None:
            error = invalid(
                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
                "can help at https://support.stripe.com/.",
                status=404,
            )
            return _error_response(error, headers)

        try:
            if method == "POST":
                params = parse_form((await request.body()).decode("utf-8"))
            else:
                params = parse_form(request.url.query)
        except (FormError, UnicodeDecodeError) as exc:
            return _error_response(invalid(str(exc), param=getattr(exc, "param", None)), headers)

        record_key = None
        fingerprint = _fingerprint(method, path, params)
        if idem_key is not None:
            if len(idem_key) > MAX_IDEMPOTENCY_KEY_LENGTH or not idem_key:
                error = invalid(
                    f"Idempotency-Key must be between 1 and {MAX_IDEMPOTENCY_KEY_LENGTH} characters.",
                    param="Idempotency-Key",
                )
                return _error_response(error, headers)
            record_key = f"{api_key}\x00{idem_key}"
            sb.store.prune_idempotency()
            record = sb.store.data["idempotency"].get(record_key)
            if record is not None:
                if record["fingerprint"] != fingerprint:
                    error = StripeError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{idem_key}' if you meant to execute a "
                        "different request.",
                    )
                    return _error_response(error, headers)
                replay_headers = {
                    **headers,
                    "Idempotent-Replayed": "true",
                    "Original-Request": record["request_id"],
                }
                return JSONResponse(record["body"], status_code=record["status"], headers=replay_headers)
            if record_key in sb.inflight:
                error = StripeError(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key (that probably "
                    "means you submitted twice, and the other request is still going through): "
                    f"{idem_key}. Please try again later.",
                    code="idempotency_key_in_use",
                )
                return _error_response(error, headers)

        ctx = Context(
            request_id=request_id,
            idempotency_key=idem_key,
            api_version=request.headers.get("stripe-version", DEFAULT_API_VERSION),
            base_url=str(request.base_url).rstrip("/"),
        )
        handler: Handler = getattr(sb.engine, route.handler)
        store_result = True
        if record_key is not None:
            sb.inflight.add(record_key)
        try:
            try:
                status, body = 200, handler(ctx, params, *ids)
            except StripeError as op_err:
                status, body, store_result = op_err.status, op_err.body(), op_err.store_idempotent
            except Exception:
                log.exception("sandbox bug while handling %s %s", method, path)
                status, body = 500, StripeError(500, "api_error", "An unknown error occurred.").body()
                store_result = False
            if route.mutating:
                if status == 200 or store_result:
                    counts: dict[str, int] = sb.store.data["requests"]
                    counts[path] = counts.get(path, 0) + 1
                if record_key is not None and store_result:
                    sb.store.data["idempotency"][record_key] = {
                        "fingerprint": fingerprint,
                        "status": status,
                        "body": body,
                        "request_id": request_id,
                        "created": time.time(),
                    }
                sb.commit(ctx)
        finally:
            if record_key is not None:
                sb.inflight.discard(record_key)
        return JSONResponse(body, status_code=status, headers=headers)

    return api


async def _json_body(request: Request) -> JSON:
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise invalid("Expected a JSON object")
    return data


def _control_routes(sb: Sandbox) -> list[Route]:
    """``/_sandbox`` endpoints: test controls that real Stripe drives from its dashboard or networks."""

    async def health(request: Request) -> Response:
        pending = sb.dispatcher.pending if sb.dispatcher else 0
        return JSONResponse({"status": "ok", "webhooks_pending": pending})

    async def add_fault(request: Request) -> Response:
        try:
            body = await _json_body(request)
            mode = body.get("mode")
            count = body.get("count", 1)
            if mode not in FAULT_MODES:
                raise invalid(f"mode must be one of {', '.join(FAULT_MODES)}", param="mode")
            if not isinstance(count, int) or count < 1:
                raise invalid("count must be a positive integer", param="count")
            fault = Fault(mode, count, body.get("path_prefix"), body.get("method"))
        except (StripeError, json.JSONDecodeError) as exc:
            err = exc if isinstance(exc, StripeError) else invalid("Invalid JSON body")
            return _error_response(err, {})
        sb.faults.append(fault)
        return JSONResponse({"faults": [asdict(f) for f in sb.faults]})

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": [asdict(f) for f in sb.faults]})

    async def clear_faults(request: Request) -> Response:
        sb.faults.clear()
        return JSONResponse({"faults": []})

    async def reset(request: Request) -> Response:
        sb.store.reset()
        sb.faults.clear()
        sb.engine.new_accounts = sb.new_accounts
        sb.store.save()
        return JSONResponse({"reset": True})

    async def get_settings(request: Request) -> Response:
        return JSONResponse({"new_accounts": sb.engine.new_accounts})

    async def change_settings(request: Request) -> Response:
        """How the sandbox behaves from now on (until the next reset): ``new_accounts`` (NEW_ACCOUNT_MODES)."""
        try:
            body = await _json_body(request)
            mode = body.get("new_accounts", sb.engine.new_accounts)
            if mode not in NEW_ACCOUNT_MODES:
                raise invalid(
                    f"new_accounts must be one of {', '.join(NEW_ACCOUNT_MODES)}", param="new_accounts"
                )
        except (StripeError, json.JSONDecodeError) as exc:
            err = exc if isinstance(exc, StripeError) else invalid("Invalid JSON body")
            return _error_response(err, {})
        sb.engine.new_accounts = mode
        return JSONResponse({"new_accounts": mode})

    async def requests_count(request: Request) -> Response:
        counts: dict[str, int] = sb.store.data["requests"]
        return JSONResponse({"total": sum(counts.values()), "paths": counts})

    async def control_op(request: Request, op: Callable[[Context, JSON], JSON]) -> Response:
        ctx = Context(request_id=new_id("request"))
        try:
            result = op(ctx, await _json_body(request))
        except StripeError as err:
            return _error_response(err, {})
        except json.JSONDecodeError:
            return _error_response(invalid("Invalid JSON body"), {})
        finally:
            if ctx.events:
                sb.commit(ctx)
        return JSONResponse(result)

    async def create_dispute(request: Request) -> Response:
        return await control_op(request, sb.engine.create_dispute)

    async def close_dispute(request: Request) -> Response:
        dp_id = request.path_params["dp_id"]
        return await control_op(request, lambda ctx, body: sb.engine.close_dispute(ctx, body, dp_id))

    async def onboard_account(request: Request) -> Response:
        acct_id = request.path_params["acct_id"]
        return await control_op(request, lambda ctx, body: sb.engine.onboard_account(ctx, body, acct_id))

    async def restrict_account(request: Request) -> Response:
        acct_id = request.path_params["acct_id"]
        return await control_op(request, lambda ctx, body: sb.engine.restrict_account(ctx, body, acct_id))

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/faults", add_fault, methods=["POST"]),
        Route("/_sandbox/faults", list_faults, methods=["GET"]),
        Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/settings", get_settings, methods=["GET"]),
        Route("/_sandbox/settings", change_settings, methods=["POST"]),
        Route("/_sandbox/requests", requests_count, methods=["GET"]),
        Route("/_sandbox/disputes", create_dispute, methods=["POST"]),
        Route("/_sandbox/disputes/{dp_id}/close", close_dispute, methods=["POST"]),
        Route("/_sandbox/accounts/{acct_id}/onboard", onboard_account, methods=["POST"]),
        Route("/_sandbox/accounts/{acct_id}/restrict", restrict_account, methods=["POST"]),
    ]


def _hosted_routes(sb: Sandbox) -> list[Route]:
    """Pages Stripe hosts for people (here: no forms, the visit itself is the outcome)."""

    async def onboarding(request: Request) -> Response:
        """An account link's URL: onboarding completes and the browser goes on to the link's return_url (or,
        for a stale link, its refresh_url)."""
        ctx = Context(request_id=new_id("request"))
        try:
            target = sb.engine.visit_account_link(
                ctx, request.path_params["acct_id"], request.path_params["token"]
            )
        except StripeError as err:
            return _error_response(err, {})
        finally:
            sb.commit(ctx)  # the link is used up even when nothing changed
        return RedirectResponse(target, status_code=302)

    return [Route("/setup/s/{acct_id}/{token}", onboarding, methods=["GET"])]


class SandboxApp(Starlette):
    """Starlette app that also implements the ``drop_response`` fault.

    The endpoint marks the scope after committing; here, outside Starlette's
    error middleware, the response is swallowed and the TCP connection aborted so
    the client sees a network error, as if the reply was lost on the wire.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return

        async def guarded_send(message: Message) -> None:
            if scope.get(DROP_SCOPE_KEY):
                if message["type"] == "http.response.start":
                    await _abort_connection(send, message)
                return
            await send(message)

        await super().__call__(scope, receive, guarded_send)


async def _abort_connection(send: Send, start: Message) -> None:
    """Abort the socket under uvicorn's response cycle (the ASGI spec has no "drop" message).

    Without uvicorn's transport, send the headers and fail before the body, which
    makes the server close the connection mid-response: still a network error.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        return
    await send(start)
    raise ConnectionAbortedError("stripe sandbox: dropping response")


def create_app(
    state_file: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    new_accounts: str = "onboarded",
) -> Starlette:
    """Build the sandbox ASGI app; state persists to ``state_file`` when given."""
    sb = Sandbox(state_file, webhook_url, webhook_secret, new_accounts)
    api = _make_api_endpoint(sb)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if sb.dispatcher is not None:
            await sb.dispatcher.aclose()

    routes = [
        *_control_routes(sb),
        *_hosted_routes(sb),
        Route("/v1/{rest:path}", api, methods=["GET", "POST", "DELETE"]),
    ]
    app = SandboxApp(routes=routes, lifespan=lifespan)
    app.state.sandbox = sb
    return app
