"""Smoke test of the order-path benchmark: `bench/orders.py --quick` runs end to end on its own stack and
its last line is the JSON report with every figure. Whether the targets are met is the bench's business
(timing targets live in bench/, not in tests), so only the presence and sanity of the figures is checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bazaar.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.integration

BARS = {
    "c1_throughput_ratio",
    "c8_throughput_ratio",
    "accept_p50_over_bare_update",
    "fulfil_p50_over_bare_update",
    "confirm_receipt_p50_over_bare_update",
    "cpu_per_order_ratio",
    "events_per_completed_order",
    "worker_rss_mb_open_orders",
}


def positive(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def test_quick_run_prints_every_figure() -> None:
    # The bench starts its own embedded services: drop any settings this test session exported for its
    # own stack (tests/conftest.py puts them in os.environ), or the bench would use those instead.
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "orders.py"), "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    report = json.loads(last)

    assert isinstance(report["errors_total"], int), last  # reported, not judged here
    for path in ("api", "bare"):
        for level in ("c1", "c8"):
            figures = report["throughput"][path][level]
            assert figures["n"] > 0, (path, level, figures)
            assert positive(figures["orders_per_s"]) and positive(figures["p50_ms"]), figures
        cpu = report["cpu"][path]
        assert positive(cpu["server_ms_per_order"]), cpu
        processes = {"api", "worker", "temporal", "postgres", "stripe", "bare-worker", "loadgen"}
        assert processes <= set(cpu["ms_per_order_by_process"]), cpu
    assert positive(report["cpu"]["api"]["ms_per_order_by_process"]["worker"])
    assert positive(report["cpu"]["bare"]["ms_per_order_by_process"]["bare-worker"])
    assert all(positive(r) for r in report["throughput_ratio"].values()), report["throughput_ratio"]
    assert positive(report["cpu"]["ratio"])
    assert positive(report["bare_update"]["p50_ms"])
    # The floors measured beside the bare Update: a local activity, then a saved row, only add to it.
    floors = report["bare_update"]
    assert positive(floors["with_local_activity"]["p50_ms"]) and positive(floors["with_saved_row"]["p50_ms"])
    assert floors["with_saved_row"]["n"] == floors["n"], floors
    assert report["actions"]["api_read"]["n"] > 0 and positive(report["actions"]["api_read"]["p50_ms"])
    floor = report["action_floor"]
    assert floor["floor_ms"] == round(floor["saved_update_p50_ms"] + floor["api_read_p50_ms"], 2), floor
    assert positive(floor["floor_over_bare_update"]) and positive(floor["accept_p50_over_floor"]), floor
    assert (
        report["sizes"]["action_interval_s"] == 0.25
    )  # paced, as one app's clicks (the docstring's phase 5)
    for action in ("accept", "fulfil", "confirm_receipt"):
        assert report["actions"][action]["n"] > 0 and positive(report["actions"][action]["p50_ms"]), action
        assert positive(report["action_ratios"][f"{action}_p50_over_bare_update_p50"])
        # The baseline paced alike, in the action's own pauses: one bare and one saved Update per request; the
        # action's bar divides by it.
        figures = report["actions"][action]
        for baseline in ("paced_bare_update", "paced_saved_update"):
            assert figures[baseline]["n"] >= figures["n"], (action, figures)
            assert positive(figures[baseline]["p50_ms"]), (action, figures)
        paced = report["action_ratios"][f"{action}_p50_over_paced_bare_update_p50"]
        assert paced == round(figures["p50_ms"] / figures["paced_bare_update"]["p50_ms"], 3), (action, paced)
        assert report["bars"][f"{action}_p50_over_bare_update"]["value"] == paced
    events = report["events"]
    assert events["orders"] > 0 and positive(events["median_per_order"]), events
    assert positive(events["median_by_workflow_type"][events["order_workflow_type"]]), events
    rss = report["worker_rss"]
    assert positive(rss["rss_before_mb"]) and positive(rss["rss_after_mb"]) and positive(rss["hwm_after_mb"])
    assert rss["open_orders_after"] > rss["open_orders_before"], rss
    assert set(report["bars"]) == BARS
    for name, entry in report["bars"].items():
        assert {"value", "bar", "goal", "met", "goal_met"} <= set(entry), name
        assert positive(entry["value"]), (name, entry)
        assert isinstance(entry["met"], bool), (name, entry)
    assert isinstance(report["load_average_at_start"], float)
    assert isinstance(report["load_average_at_end"], float)
