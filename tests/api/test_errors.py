"""How the API names a validation error (api.errors.located), unit-tested on pydantic's own errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.errors import located
from api.schemas import ResolveIn


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
