"""JSON numbers and booleans in requests, taken as JSON means them.

FastAPI validates a parsed body in pydantic's lax mode, which turns `"2"` into 2, `"yes"` or `1` into true and
`false` into 0.0: a client's wrong type would be acted on as some value it did not send. Pydantic's strict mode
goes too far the other way for numbers (it refuses `3.0` for an integer, which JSON Schema calls an integer).
These types refuse strings and booleans where a number is due, and anything but `true`/`false` where a boolean
is; an integer still takes a whole JSON number such as `3.0`. Use them on every request field (query and path
values are strings by nature and keep FastAPI's conversion).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, StrictBool
from pydantic_core import PydanticCustomError


def _a_json_number(value: Any) -> Any:
    # bool is an int subclass in Python: it has to be refused by name.
    if isinstance(value, (str, bool)):
        raise PydanticCustomError(
            "json_number_type", "a JSON number is required, not {given}", {"given": type(value).__name__}
        )
    return value


# Bounds go before it in an `Annotated` that is then made optional (`Annotated[int, Field(ge=0), JSON_NUMBER] |
# None`): after it, pydantic still checks them but writes them into the JSON Schema as its own `ge`/`le` keys.
JSON_NUMBER = BeforeValidator(_a_json_number)

JsonInt = Annotated[int, JSON_NUMBER]
JsonFloat = Annotated[float, JSON_NUMBER]
JsonBool = StrictBool
