"""PromQL as the deploy tests read it: the metric names an expression selects, the rules under
deploy/prometheus/rules/, promtool, and the metric names a /metrics page serves."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.money import paid_order

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
# Series Prometheus makes itself (scrape health, the alerts' state): no process of ours exports them.
PROMETHEUS_OWN = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "Inf", "NaN"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords, labels, durations or variables)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables outside ranges
    return {word for word in _WORD.findall(text) if word not in _KEYWORDS}


def rules() -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of the rule files."""
    found: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            found += group["rules"]
    return found


def recorded() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def served_names(exposition: str) -> set[str]:
    """Metric names of a Prometheus text page: every sample's, and those its `# TYPE` lines declare (a labelled
    family with no sample yet is still served by its process)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def promtool() -> str:
    """The promtool binary, or a failure that says how to get it (never a skip: CI must run these checks)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: `make bootstrap` installs Debian's `prometheus` package when run as root "
            "(or run `apt-get update && apt-get install -y prometheus`)",
            pytrace=False,
        )
    return found


def served_by_stack(stack: Any, http: httpx.Client) -> set[str]:
    """What the test stack's API and worker serve once an order was paid and a search made (the worker's metrics
    appear as they are first recorded)."""
    paid_order(http)
    assert http.get("/v1/search/listings", params={"q": "bike"}).status_code == 200
    api = http.get("/metrics")
    assert api.status_code == 200, api.text
    worker = httpx.get(stack.worker_metrics_url, timeout=10)
    assert worker.status_code == 200, worker.text
    return served_names(api.text) | served_names(worker.text)
