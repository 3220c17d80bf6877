"""deploy/grafana/: each dashboard loads, is provisioned with the Prometheus data source compose provisions, and
every query names only metrics the test stack's API or worker serves (or series the rules record)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.promql import PROMETHEUS_OWN, ROOT, metric_names, recorded, served_by_stack

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(path: Path) -> list[tuple[str, str]]:
    board = json.loads(path.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in _panels(board["panels"])
        for target in panel.get("targets", [])
    ]


def test_the_four_dashboards_load_and_use_the_provisioned_data_source() -> None:
    assert [p.stem for p in DASHBOARDS] == ["orders", "payments", "search", "support-queues"]
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [datasource] = source["datasources"]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "bazaar.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        uids.add(board["uid"])
        assert board["title"].startswith("Bazaar: ") and board["panels"], path.name
        ids = [panel["id"] for panel in _panels(board["panels"])]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in _panels(board["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == datasource["uid"], (path.name, panel["title"])
            assert panel.get("targets"), (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"]["uid"] == datasource["uid"]
    assert len(uids) == len(DASHBOARDS)


@pytest.mark.integration
def test_every_query_names_a_metric_that_is_served(stack: Any, http: httpx.Client) -> None:
    served = served_by_stack(stack, http)
    known = served | recorded() | PROMETHEUS_OWN
    problems = [
        f"{path.name} / {title}: {name}"
        for path in DASHBOARDS
        for title, expr in _queries(path)
        for name in sorted(metric_names(expr))
        if name not in known
    ]
    assert problems == []
    used = {name for path in DASHBOARDS for _, expr in _queries(path) for name in metric_names(expr)}
    assert {
        "bazaar_http_request_duration_seconds_bucket",
        "bazaar_order_transitions",
        "bazaar_payment_calls",
    } <= used
