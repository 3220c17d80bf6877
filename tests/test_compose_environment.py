"""docker-compose.yml's environment: app services get only Settings fields, secrets are required
interpolations that reach only the processes that need them, and every variable is documented for operators.

No Docker engine is needed: compose's variable interpolation is reproduced in tests/support/compose.py closely
enough to check what each process would really receive.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from bazaar.settings import Settings
from tests.support.compose import (
    APP_SERVICES,
    COMPOSE_ENV_EXAMPLE,
    COMPOSE_FILE,
    REQUIRED_REF,
    SECRET_SETTINGS,
    SECRETISH_NAME,
    SETTINGS_ENV_NAMES,
    VAR_REF,
    MissingVariableError,
    compose_variables,
    environment_of,
    full_env,
    interpolate,
    load_compose,
    resolved_app_env,
    services_of,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


# --- environment: only Settings fields, secrets interpolated -----------------------------------------------------


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_app_environment_names_are_settings_fields(compose: dict[str, Any], service: str) -> None:
    env = environment_of(services_of(compose)[service])
    assert env, f"{service} has no environment"
    unknown = set(env) - SETTINGS_ENV_NAMES
    assert unknown == set(), (
        f"{service} gets variables that bazaar.settings.Settings does not know: {unknown}"
    )
    assert "env_file" not in services_of(compose)[service], "configure app services by environment only"


@pytest.mark.parametrize("service", sorted(APP_SERVICES))
def test_app_environment_resolves_to_valid_settings(compose: dict[str, Any], service: str) -> None:
    resolved = resolved_app_env(compose, service, full_env())
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in resolved.items()})  # type: ignore[arg-type]
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert urlsplit(settings.database_url).hostname == "postgres"
    assert settings.temporal_address == "temporal:7233"
    assert settings.meili_url == "http://meilisearch:7700"
    for name in resolved:
        value = getattr(settings, name.lower())
        if isinstance(value, SecretStr):
            assert value.get_secret_value(), f"{service}: {name} resolved empty"


def test_every_compose_variable_of_an_app_service_is_a_setting_or_a_stack_secret(
    compose: dict[str, Any],
) -> None:
    # Values may only draw on Settings names (same meaning) or on the stack's own database passwords.
    allowed = SETTINGS_ENV_NAMES | {"BAZAAR_DB_PASSWORD"}
    for service in APP_SERVICES:
        for key, value in environment_of(services_of(compose)[service]).items():
            used = set(VAR_REF.findall(value))
            assert used <= allowed, f"{service}.{key} interpolates {used - allowed}"
            settings_vars = used & SETTINGS_ENV_NAMES
            assert settings_vars <= {key}, f"{service}.{key} is fed from another setting: {settings_vars}"


def test_secrets_are_required_interpolations(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in services_of(compose).items():
        for key, value in environment_of(service).items():
            if key in SECRET_SETTINGS or SECRETISH_NAME.search(key):
                match = REQUIRED_REF.fullmatch(value)
                assert match, f"{name}.{key} must be `${{VAR:?message}}`, not {value!r}"
                assert match["message"].strip(), f"{name}.{key} needs a message saying how to set it"
                if key in SECRET_SETTINGS:
                    assert match["name"] == key, f"{name}.{key} must come from the variable of the same name"
                checked += 1
    assert checked >= 10


def test_database_url_has_no_literal_password(compose: dict[str, Any]) -> None:
    for service in APP_SERVICES:
        value = environment_of(services_of(compose)[service])["DATABASE_URL"]
        default = re.fullmatch(r"\$\{DATABASE_URL:-(?P<url>.+)\}", value)
        assert default, f"{service}: DATABASE_URL must default to the bundled server and be overridable"
        password = re.search(r"://[^:/@]+:(?P<password>[^@]+)@", default["url"])
        assert password and re.fullmatch(r"\$\{[A-Z_]+\}", password["password"]), default["url"]


def test_no_literal_secrets_anywhere() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for pattern in (r"sk_(live|test)_[0-9A-Za-z]", r"whsec_[0-9A-Za-z]", r"rk_(live|test)_[0-9A-Za-z]"):
        assert not re.search(pattern, text.replace("sk_live_...", "").replace("sk_test_...", ""))
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Z_]*(PASSWORD|PWD|SECRET|_KEY|TOKEN)):\s*(?P<value>\S.*)$", line)
        if m:
            assert m["value"].startswith("${"), line


def test_missing_secret_stops_compose(compose: dict[str, Any]) -> None:
    env = full_env()
    for secret in ("JWT_SECRET", "STRIPE_WEBHOOK_SECRET", "MEILI_SEARCH_KEY"):
        partial = {k: v for k, v in env.items() if k != secret}
        with pytest.raises(MissingVariableError) as excinfo:
            resolved_app_env(compose, "api", partial)
        assert excinfo.value.name == secret
        with pytest.raises(MissingVariableError):
            resolved_app_env(compose, "api", {**partial, secret: ""})


def test_each_process_gets_the_secrets_it_needs_and_no_more(compose: dict[str, Any]) -> None:
    env = {service: set(environment_of(services_of(compose)[service])) for service in APP_SERVICES}
    assert {"JWT_SECRET", "MEILI_SEARCH_KEY", "STRIPE_WEBHOOK_SECRET"} <= env["api"]
    assert "MEILI_MASTER_KEY" not in env["api"], "the API must use the search-only key"
    assert {"STRIPE_API_BASE", "STRIPE_SECRET_KEY", "SMTP_HOST", "SMTP_PASSWORD"} <= env["worker"]
    assert "MEILI_MASTER_KEY" in env["search-sync"]
    # Least privilege: each key goes only to the process that uses it (see settings.require(...) callers).
    holders = {name: {s for s, names in env.items() if name in names} for name in SECRET_SETTINGS}
    assert holders["MEILI_MASTER_KEY"] == {"search-sync"}
    assert holders["STRIPE_SECRET_KEY"] == {"worker"}
    # The sender signs unsubscribe links (the worker too, for legacy notification workflows); the API checks them.
    assert holders["UNSUBSCRIBE_SECRET"] == {"api", "worker", "sender"}
    for api_only in (
        "JWT_SECRET",
        "API_KEY_SECRET",
        "STRIPE_WEBHOOK_SECRET",
        "MEILI_SEARCH_KEY",
        "METRICS_TOKEN",
    ):
        assert holders[api_only] == {"api"}, api_only
    assert not (env["migrate"] & SECRET_SETTINGS), "migrate needs only the database"
    for service in APP_SERVICES:
        assert "DATABASE_URL" in env[service]


def test_every_compose_variable_is_documented_for_operators() -> None:
    listed: dict[str, bool] = {}
    for line in COMPOSE_ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=", line)
        if m:
            listed[m["name"]] = m["comment"] is None
    used = compose_variables()
    assert set(used) == set(listed), "deploy/compose.env.example and docker-compose.yml disagree"
    for name, required in used.items():
        assert listed[name] == required, (
            f"{name}: required ones are active empty lines, optional ones comments"
        )


# --- the interpolation helper itself -----------------------------------------------------------------------------


def test_interpolate_matches_compose_rules() -> None:
    env = {"A": "a", "E": ""}
    assert interpolate("${A}-${B}-$$", env) == "a--$"
    assert interpolate("${B:-x${A}y}", env) == "xay"
    assert interpolate("${E:-d}|${E-d}", env) == "d|"
    assert interpolate("${A:+set}|${B:+set}", env) == "set|"
    with pytest.raises(MissingVariableError):
        interpolate("${E:?must be set}", env)
    assert interpolate("${E?only if unset}", env) == ""
