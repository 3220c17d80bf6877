"""A body sent under a media type its operation does not read is a 415 `unsupported_media_type`, declared wherever
an operation takes a body (found from outside: it was a 422 "Input should be a valid dictionary", and JSON sent
to the token endpoint, which takes a form, a 422 saying the username it carried was required)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.http import listing_body, seller_with_payout

pytestmark = pytest.mark.integration


def test_a_json_body_under_another_content_type_is_415(http: httpx.Client) -> None:
    seller = seller_with_payout(http)
    body = json.dumps(listing_body()).encode()
    for media in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        refused = http.post("/v1/listings", content=body, headers={**seller.headers, "Content-Type": media})
        assert refused.status_code == 415, refused.text
        assert refused.json()["error"]["code"] == "unsupported_media_type"
        assert media in refused.json()["error"]["message"]
    for media in ("application/json; charset=utf-8", "application/merge-patch+json"):
        made = http.post("/v1/listings", content=body, headers={**seller.headers, "Content-Type": media})
        assert made.status_code == 201, made.text
    # Without a Content-Type the body is not read as JSON either.
    bare = http.post("/v1/listings", content=body, headers={**seller.headers, "Content-Type": ""})
    assert (bare.status_code, bare.json()["error"]["code"]) == (415, "unsupported_media_type"), bare.text
    # JSON to the operation that takes a form.
    token = http.post("/v1/auth/token", json={"username": seller.email, "password": "x"})
    assert (token.status_code, token.json()["error"]["code"]) == (415, "unsupported_media_type"), token.text
    assert "form" in token.json()["error"]["message"]
    # Nor anything else that is not a form (found from outside: text, or no Content-Type, was a 422 "username:
    # Field required"); a form, urlencoded or multipart, is read.
    form = f"username={seller.email}&password=x"
    for media in ("text/plain", ""):
        other = http.post("/v1/auth/token", content=form, headers={"Content-Type": media})
        assert (other.status_code, other.json()["error"]["code"]) == (415, "unsupported_media_type"), (
            other.text
        )
    for sent in ({"data": {"username": seller.email, "password": "x"}}, {"files": {"username": (None, "x")}}):
        read = http.post("/v1/auth/token", **sent)
        assert read.status_code in (401, 422), read.text  # read as a form: a wrong password, a missing field
    # A body that is JSON but not what the operation takes stays a 422 naming the field.
    wrong = http.post("/v1/listings", json={"title": 5}, headers=seller.headers)
    assert wrong.status_code == 422, wrong.text


def test_the_document_declares_415_where_a_body_is_taken(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    assert "415" in paths["/v1/listings"]["post"]["responses"]
    assert "415" in paths["/v1/orders"]["post"]["responses"]
    assert "415" in paths["/v1/auth/token"]["post"]["responses"]  # a form, as OAuth2 has it
    assert "415" not in paths["/v1/listings/{listing_id}"]["get"]["responses"]
