"""deploy/prometheus/: the rules are what generate_rules.py writes, promtool accepts the rules and the config,
every alert fires and clears on the unit-test series of deploy/prometheus/tests/ (`promtool test rules`), each SLO
is written down in docs/slo.md with its target, and every metric the rules name is served by the test stack's API
or worker."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.promql import (
    PROMETHEUS_DIR,
    PROMETHEUS_OWN,
    ROOT,
    RULES_DIR,
    metric_names,
    promtool,
    recorded,
    rules,
    served_by_stack,
)

TESTS_DIR = PROMETHEUS_DIR / "tests"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_rules", PROMETHEUS_DIR / "generate_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> str:
    done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_slo_rules_are_what_the_generator_writes() -> None:
    generator = _generator()
    assert (RULES_DIR / "slo.rules.yml").read_text(encoding="utf-8") == generator.render(), (
        "deploy/prometheus/rules/slo.rules.yml is stale: run .venv/bin/python deploy/prometheus/generate_rules.py"
    )


def test_promtool_checks_the_rules_and_the_config(tmp_path: Path) -> None:
    files = sorted(str(path) for path in RULES_DIR.glob("*.rules.yml"))
    assert len(files) == 2
    out = _run("check", "rules", *files)
    assert out.count("SUCCESS") == len(files), out
    # The config as the container sees it, with its paths pointed at this checkout and a token file.
    token = tmp_path / "metrics-token"
    token.write_text("test-token")
    config = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    config = config.replace("/prometheus/metrics-token", str(token))
    config = config.replace("/etc/prometheus/rules/", f"{RULES_DIR}/")
    (tmp_path / "prometheus.yml").write_text(config)
    _run("check", "config", str(tmp_path / "prometheus.yml"))


def test_every_alert_fires_and_clears_in_promtools_unit_tests() -> None:
    files = sorted(TESTS_DIR.glob("*.test.yml"))
    out = _run("test", "rules", *map(str, files))
    assert out.count("SUCCESS") == len(files), out
    # Each alert has a case where it fires (exp_alerts non-empty) and a later one where it has cleared.
    cases: dict[str, list[tuple[int, bool]]] = {}
    for path in files:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                minutes = int(str(case["eval_time"]).removesuffix("m"))
                cases.setdefault(case["alertname"], []).append((minutes, bool(case["exp_alerts"])))
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert set(cases) == alerts, f"alerts without unit tests: {alerts - set(cases)}"
    for alert, seen in cases.items():
        fired = [t for t, firing in seen if firing]
        assert fired and any(not firing and t > min(fired) for t, firing in seen), (alert, seen)


def test_each_slo_is_written_down_with_its_target() -> None:
    doc = (ROOT / "docs" / "slo.md").read_text(encoding="utf-8")
    for slo in _generator().SLOS:
        section = re.search(rf"^## .*\(`{slo.name}`\)\n(?P<body>(?:.*\n)*?)(?=^## |\Z)", doc, re.M)
        assert section, f"docs/slo.md has no section for {slo.name}"
        assert f"{slo.objective * 100:g} %" in section["body"], (slo.name, slo.objective)


@pytest.mark.integration
def test_every_metric_the_rules_name_is_served(stack: Any, http: httpx.Client) -> None:
    served = served_by_stack(stack, http)
    problems = []
    for rule in rules():
        for name in metric_names(str(rule["expr"])):
            if ":" in name:
                if name not in recorded():
                    problems.append(f"{rule.get('alert') or rule.get('record')}: no rule records {name}")
            elif name not in served | PROMETHEUS_OWN:
                problems.append(f"{rule.get('alert') or rule.get('record')}: {name} is not served")
    assert problems == []
