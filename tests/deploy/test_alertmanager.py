"""deploy/alertmanager/: amtool accepts the config, every alert of deploy/prometheus/rules/ carries a severity that
a route sends to its receiver (`page` to the pager, `ticket` to the ticket queue; checked with the config's routes
and with `amtool config routes test`), a page inhibits only the ticket of the same SLO, and Prometheus and compose
are wired to it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose import COMPOSE_FILE, bind_mounts_of, image_of, services_of
from tests.support.promql import PROMETHEUS_DIR, ROOT, rules

CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SEVERITIES = {"page", "ticket"}  # each names its receiver
_MATCHER = re.compile(r'^\s*(?P<label>[A-Za-z_]\w*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*$')


def amtool() -> str:
    """The amtool binary, or a failure that says how to get it (never a skip: CI must run these checks)."""
    found = shutil.which("amtool")
    if found is None:
        pytest.fail(
            "amtool is not installed: `make bootstrap` installs Debian's `prometheus-alertmanager` package when run "
            "as root (or run `apt-get update && apt-get install -y --no-install-recommends prometheus-alertmanager`)",
            pytrace=False,
        )
    return found


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool(), *args], capture_output=True, text=True, timeout=60, check=False)


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return loaded


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Alertmanager's matcher semantics: regexes are anchored, an absent label is the empty string."""
    for matcher in matchers:
        m = _MATCHER.match(matcher)
        assert m, f"matcher this test does not read: {matcher!r}"
        value = labels.get(m["label"], "")
        wanted = m["value"].encode().decode("unicode_escape")
        hit = re.fullmatch(wanted, value) is not None if m["op"] in ("=~", "!~") else value == wanted
        if hit != (m["op"] in ("=", "=~")):
            return False
    return True


def alerts() -> list[dict[str, str]]:
    """Each alert's labels as Alertmanager gets them (its name included)."""
    return [{"alertname": rule["alert"], **rule.get("labels", {})} for rule in rules() if "alert" in rule]


def test_amtool_accepts_the_config() -> None:
    done = _amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout, done.stdout


def test_every_alert_has_a_severity_that_a_route_sends_to_its_receiver() -> None:
    routes = config()["route"]["routes"]
    found = alerts()
    assert len(found) >= 10
    for labels in found:
        assert labels.get("severity") in SEVERITIES, (
            f"{labels['alertname']}: severity must be one of {SEVERITIES}"
        )
        # A route of its own, not the default route it would fall through to.
        matched = [route for route in routes if matches(route.get("matchers", []), labels)]
        assert matched, f"{labels['alertname']}: no route matches {labels}"
        assert matched[0]["receiver"] == labels["severity"], (labels, matched[0])
        # And Alertmanager's own routing agrees.
        pairs = [f"{name}={value}" for name, value in sorted(labels.items())]
        done = _amtool(
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={labels['severity']}",
            *pairs,
        )
        assert done.returncode == 0, (labels, done.stdout, done.stderr)


def test_a_page_inhibits_only_the_ticket_of_the_same_slo() -> None:
    inhibit_rules = config()["inhibit_rules"]

    def inhibits(source: dict[str, str], target: dict[str, str]) -> bool:
        return any(
            matches(rule.get("source_matchers", []), source)
            and matches(rule.get("target_matchers", []), target)
            and all(source.get(label, "") == target.get(label, "") for label in rule.get("equal", []))
            for rule in inhibit_rules
        )

    found = alerts()
    pages = [labels for labels in found if labels["severity"] == "page"]
    tickets = [labels for labels in found if labels["severity"] == "ticket"]
    paired = 0
    for page in pages:
        for ticket in tickets:
            same_slo = "slo" in page and page.get("slo") == ticket.get("slo")
            assert inhibits(page, ticket) == same_slo, (page["alertname"], ticket["alertname"])
            paired += same_slo
        for other in pages:
            assert not inhibits(page, other), (page["alertname"], other["alertname"])
    assert paired >= 4  # every paging SLO's fast burn silences its slow burn


def test_prometheus_and_compose_send_alerts_to_this_alertmanager() -> None:
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        target
        for manager in prometheus["alerting"]["alertmanagers"]
        for static in manager["static_configs"]
        for target in static["targets"]
    ]
    assert targets == ["alertmanager:9093"]
    services = services_of(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")))
    service = services["alertmanager"]
    assert image_of(service)[0] == "prom/alertmanager"
    mounted = {Path(target): source for target, source in bind_mounts_of(service).items()}
    config_flag = next(arg for arg in service["command"] if arg.startswith("--config.file="))
    assert ROOT / mounted[Path(config_flag.removeprefix("--config.file="))] == CONFIG
