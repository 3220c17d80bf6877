"""Connect onboarding: how new accounts start, account links and the hosted onboarding they open, and the test
controls that restrict an account and lift it, each change an `account.updated` event."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from tests.support.sandbox import SandboxProcess

REFRESH = "https://seller.example.com/onboarding/refresh"
RETURN = "https://seller.example.com/onboarding/done"
FLAGS = ("details_submitted", "charges_enabled", "payouts_enabled")


def _pending(sbx: SandboxProcess) -> None:
    assert sbx.control("POST", "/_sandbox/settings", {"new_accounts": "pending"}).json() == {
        "new_accounts": "pending"
    }


def _account(client: stripe.StripeClient) -> stripe.Account:
    return client.v1.accounts.create(
        params={"type": "express", "country": "DE", "capabilities": {"transfers": {"requested": True}}}
    )


def _link(client: stripe.StripeClient, account_id: str) -> stripe.AccountLink:
    return client.v1.account_links.create(
        params={
            "account": account_id,
            "type": "account_onboarding",
            "refresh_url": REFRESH,
            "return_url": RETURN,
        }
    )


def _flags(account: stripe.Account) -> list[bool]:
    return [bool(account[f]) for f in FLAGS]


def _transfers(account: stripe.Account) -> str:
    """The state of the account's `transfers` capability."""
    return str(account["capabilities"]["transfers"])


def _updates(client: stripe.StripeClient, account_id: str) -> list[dict[str, Any]]:
    """The account's `account.updated` events, oldest first, as plain dicts."""
    events = client.v1.events.list(params={"type": "account.updated", "limit": 100}).data
    return [e.to_dict() for e in reversed(events) if e.data.object["id"] == account_id]


def test_new_accounts_start_onboarded_unless_set_to_pending(
    sbx: SandboxProcess, client: stripe.StripeClient, stripe_fixtures: dict[str, Any]
) -> None:
    assert sbx.control("GET", "/_sandbox/settings").json() == {"new_accounts": "onboarded"}
    ready = _account(client)
    assert _flags(ready) == [True, True, True] and _transfers(ready) == "active"
    assert ready.requirements is not None and ready.requirements.currently_due == []

    _pending(sbx)
    pending = _account(client)
    assert _flags(pending) == [False, False, False] and _transfers(pending) == "inactive"
    expected = stripe_fixtures["account"]["requirements"]
    assert pending.requirements is not None
    assert pending.requirements.currently_due == expected["currently_due"]
    assert pending.requirements.disabled_reason == "requirements.past_due"
    assert pending.requirements.past_due == []
    # Creating an account reports it, as before.
    [created] = _updates(client, pending.id)
    assert created["data"]["object"]["charges_enabled"] is False

    refused = sbx.control("POST", "/_sandbox/settings", {"new_accounts": "sometimes"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "new_accounts"
    # A reset returns to how the sandbox was started.
    sbx.control("POST", "/_sandbox/reset")
    assert sbx.control("GET", "/_sandbox/settings").json() == {"new_accounts": "onboarded"}


def test_account_link_opens_the_hosted_onboarding_once(
    sbx: SandboxProcess, client: stripe.StripeClient
) -> None:
    _pending(sbx)
    account = _account(client)
    link = _link(client, account.id)
    assert link.object == "account_link"
    assert link.url.startswith(f"{sbx.url}/setup/s/{account.id}/")
    assert link.expires_at - link.created == 300

    # Visiting it is onboarding: the browser lands on the return URL, the account can sell, one event says so.
    visit = httpx.get(link.url, follow_redirects=False, timeout=5)
    assert (visit.status_code, visit.headers["location"]) == (302, RETURN)
    done = client.v1.accounts.retrieve(account.id)
    assert _flags(done) == [True, True, True] and _transfers(done) == "active"
    assert done.requirements is not None and done.requirements.currently_due == []
    assert done.requirements.disabled_reason is None
    created, onboarded = _updates(client, account.id)
    assert onboarded["data"]["object"]["charges_enabled"] is True
    previous = onboarded["data"]["previous_attributes"]
    assert {k: previous[k] for k in FLAGS} == dict.fromkeys(FLAGS, False)
    assert previous["requirements"]["disabled_reason"] == "requirements.past_due"
    assert onboarded["created"] >= created["created"]

    # A link works once: a second visit goes to the refresh URL, where the platform makes a new link.
    again = httpx.get(link.url, follow_redirects=False, timeout=5)
    assert (again.status_code, again.headers["location"]) == (302, REFRESH)
    assert len(_updates(client, account.id)) == 2
    unknown = httpx.get(f"{sbx.url}/setup/s/{account.id}/nope", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "resource_missing"


def _refused(client: stripe.StripeClient, params: dict[str, Any]) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.account_links.create(params=params)  # type: ignore[arg-type]
    return exc.value


def test_account_link_parameters(client: stripe.StripeClient) -> None:
    account = _account(client)
    base: dict[str, Any] = {
        "account": account.id,
        "type": "account_onboarding",
        "refresh_url": REFRESH,
        "return_url": RETURN,
    }
    for missing in ("account", "type", "refresh_url", "return_url"):
        refused = _refused(client, {k: v for k, v in base.items() if k != missing})
        assert refused.param == missing and refused.code == "parameter_missing"
    assert _refused(client, {**base, "type": "account_onboard"}).param == "type"
    assert _refused(client, {**base, "account": "acct_missing"}).http_status == 404
    # An onboarded account gets a link too (to update its details); visiting it changes nothing: no event.
    link = _link(client, account.id)
    assert httpx.get(link.url, follow_redirects=False, timeout=5).headers["location"] == RETURN
    assert len(_updates(client, account.id)) == 1


def test_restrict_and_lift(sbx: SandboxProcess, client: stripe.StripeClient) -> None:
    account = _account(client)

    # Payouts: a bank account bounced. Charges still work.
    payouts = sbx.control("POST", f"/_sandbox/accounts/{account.id}/restrict", {"disable": "payouts"}).json()
    assert [payouts[f] for f in FLAGS] == [True, True, False]
    assert payouts["requirements"]["past_due"] == ["external_account"]
    assert payouts["requirements"]["currently_due"] == ["external_account"]
    assert payouts["requirements"]["disabled_reason"] is None

    # Charges: a document is past due; the account is disabled for it.
    fields = ["individual.verification.document"]
    charges = sbx.control(
        "POST", f"/_sandbox/accounts/{account.id}/restrict", {"disable": "charges", "past_due": fields}
    ).json()
    assert [charges[f] for f in FLAGS] == [True, False, False]
    assert charges["requirements"]["past_due"] == ["external_account", *fields]
    assert charges["requirements"]["disabled_reason"] == "requirements.past_due"

    # Onboarding again (the control, or an account link) provides everything: all enabled, nothing due.
    fixed = sbx.control("POST", f"/_sandbox/accounts/{account.id}/onboard").json()
    assert [fixed[f] for f in FLAGS] == [True, True, True]
    assert fixed["requirements"]["past_due"] == [] and fixed["requirements"]["disabled_reason"] is None
    assert _flags(client.v1.accounts.retrieve(account.id)) == [True, True, True]

    # Each change is one account.updated with what it changed; a change that changes nothing sends none.
    sbx.control("POST", f"/_sandbox/accounts/{account.id}/onboard")
    _, restricted_payouts, restricted_charges, lifted = _updates(client, account.id)
    assert restricted_payouts["data"]["previous_attributes"]["payouts_enabled"] is True
    assert restricted_charges["data"]["previous_attributes"]["charges_enabled"] is True
    assert "payouts_enabled" not in restricted_charges["data"]["previous_attributes"]
    assert lifted["data"]["object"]["charges_enabled"] is True
    assert set(lifted["data"]["previous_attributes"]) >= {
        "charges_enabled",
        "payouts_enabled",
        "requirements",
    }

    for body, param in (
        ({"disable": "everything"}, "disable"),
        ({"disable": "charges", "past_due": []}, "past_due"),
    ):
        refused = sbx.control("POST", f"/_sandbox/accounts/{account.id}/restrict", body)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param
    assert sbx.control("POST", "/_sandbox/accounts/acct_missing/onboard").status_code == 404
