"""How the API names a validation error (api.errors.located, unit-tested on pydantic's own errors) and what every one
lists."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.errors import install, located
from api.schemas import ResolveIn
from bazaar.errors import DomainError, ErrorCode, field_error


def test_our_own_refusal_reads_without_pydantics_prefix() -> None:
    with pytest.raises(ValidationError) as refused:
        ResolveIn.model_validate({"resolution": "release", "refund_amount": 1000})
    error = located(refused.value.errors()[0])
    assert error == {
        "loc": [],
        "msg": "refund_amount is only for partial_refund, not release",
        "type": "value_error",
    }


def test_pydantics_own_messages_are_kept() -> None:
    with pytest.raises(ValidationError) as refused:
        ResolveIn.model_validate({"resolution": "partial_refund", "refund_amount": 0})
    error = located(refused.value.errors()[0])
    assert error["loc"] == ["refund_amount"] and error["msg"].startswith("Input should be greater than"), (
        error
    )


def test_every_validation_error_lists_its_errors() -> None:
    """docs/api.md: a 422 `validation_error` always has `details.errors`. Found from outside: a refusal by the
    domain (the 51st webhook endpoint, then) came without them; one about the request as a whole names `body`."""
    app = FastAPI()
    install(app)

    @app.post("/whole")
    async def whole() -> None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "the return could not be stored", {"order_id": "o-1"})

    @app.post("/field")
    async def field() -> None:
        raise field_error("lines", "no such line", "invalid_lines")

    with TestClient(app) as client:
        refused = client.post("/whole").json()["error"]
        assert refused["details"] == {
            "order_id": "o-1",
            "errors": [{"loc": ["body"], "msg": "the return could not be stored", "type": "invalid"}],
        }
        named = client.post("/field").json()["error"]["details"]["errors"]
        assert named == [{"loc": ["body", "lines"], "msg": "no such line", "type": "invalid_lines"}]
