"""How Temporal's RPC errors reach HTTP (api/errors.py), without a server: an Update the server gave up on with its
failed workflow task is a retryable 503, like Temporal out of reach; a missing workflow is "gone"; others are bugs."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from google.protobuf.any_pb2 import Any as AnyProto
from temporalio.api.common.v1 import GrpcStatus
from temporalio.service import RPCError, RPCStatusCode

from api.errors import install, workflow_gone, workflow_not_ready


def rpc_error(status: RPCStatusCode, detail_type: str | None = None) -> RPCError:
    details = [AnyProto(type_url=f"type.googleapis.com/{detail_type}")] if detail_type else []
    raw = GrpcStatus(code=int(status), message="x", details=details).SerializeToString()
    return RPCError("x", status, raw)


NOT_READY = "temporal.api.errordetails.v1.WorkflowNotReadyFailure"


def test_an_update_given_up_with_its_workflow_task_is_not_ready() -> None:
    assert workflow_not_ready(rpc_error(RPCStatusCode.FAILED_PRECONDITION, NOT_READY))
    assert not workflow_not_ready(rpc_error(RPCStatusCode.FAILED_PRECONDITION))  # another precondition
    assert not workflow_not_ready(rpc_error(RPCStatusCode.NOT_FOUND))
    assert workflow_gone(rpc_error(RPCStatusCode.NOT_FOUND))


def test_not_ready_is_a_503_with_retry_after() -> None:
    app = FastAPI()
    install(app)

    @app.get("/not-ready")
    async def not_ready() -> None:
        raise rpc_error(RPCStatusCode.FAILED_PRECONDITION, NOT_READY)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/not-ready")

    answer = asyncio.run(call())
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert answer.headers["Retry-After"]
