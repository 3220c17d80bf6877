"""`.env.example` documents every field of the Settings object, with its real default and a comment."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values
from pydantic import SecretStr, TypeAdapter

from bazaar.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"
ASSIGNMENT = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def _assignment_lines() -> list[tuple[int, str]]:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [(i, m["name"]) for i, line in enumerate(lines) if (m := ASSIGNMENT.match(line))]


def _documented() -> dict[str, str | None]:
    # Parsed exactly as pydantic-settings parses an env_file (python-dotenv).
    return dict(dotenv_values(ENV_EXAMPLE))


def _is_secret(name: str) -> bool:
    field = Settings.model_fields[name]
    return "SecretStr" in repr(field.annotation)


def test_names_equal_settings_fields() -> None:
    documented = set(_documented())
    fields = {name.upper() for name in Settings.model_fields}
    assert documented - fields == set(), "documented but not a Settings field"
    assert fields - documented == set(), "Settings field missing from .env.example"


def test_every_name_once_and_every_line_parses() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    names = [name for _, name in _assignment_lines()]
    assert len(names) == len(set(names)), "a name is documented twice"
    for line in lines:
        assert line == "" or line.startswith("#") or ASSIGNMENT.match(line), f"unparseable line: {line!r}"


def test_every_name_has_a_one_line_comment() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, name in _assignment_lines():
        above = lines[index - 1] if index > 0 else ""
        assert re.match(r"^# \S.{8,}", above), f"{name} has no comment line directly above it"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_documented_default_equals_settings_default(name: str) -> None:
    documented = _documented()
    value = documented.get(name.upper())
    field = Settings.model_fields[name]
    default: Any = field.get_default(call_default_factory=True)
    if _is_secret(name) or default is None:
        assert value in ("", None), f"{name.upper()} must be left empty in .env.example"
        assert default is None, f"{name} is a secret and should have no default"
        return
    assert value is not None and value != "", f"{name.upper()} has a default ({default!r}) but is empty"
    assert field.annotation is not None
    parsed = TypeAdapter(field.annotation).validate_python(value)
    assert parsed == default, f"{name.upper()}={value!r} but Settings defaults to {default!r}"
    assert type(parsed) is type(default)


def test_secret_fields_are_recognised() -> None:
    # Guards the helper above: if SecretStr detection broke, secrets would be compared as plain strings.
    secrets = {name for name in Settings.model_fields if _is_secret(name)}
    assert {"jwt_secret", "meili_master_key", "stripe_secret_key"} <= secrets
    assert isinstance(Settings(_env_file=None, jwt_secret="x").jwt_secret, SecretStr)


def test_the_example_loads_into_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loaded the way a process would load it (as .env in the working directory, no overriding environment).
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    loaded = Settings(_env_file=env_file)
    defaults = Settings(_env_file=None)
    for name in Settings.model_fields:
        if _is_secret(name) or Settings.model_fields[name].default is None:
            continue
        assert getattr(loaded, name) == getattr(defaults, name), name
