"""Writes deploy/prometheus/rules/slo.rules.yml: the recording rules and multi-window, multi-burn-rate alerts of
every SLO in docs/slo.md, from the table `SLOS` below (the one place the targets live).

    .venv/bin/python deploy/prometheus/generate_rules.py      # after changing SLOS; commit both files

tests/deploy/test_prometheus.py checks that the file is what this writes, runs `promtool check rules` and
`promtool test rules` (deploy/prometheus/tests/) on it, and that every metric it names is one the code exports.

Each SLO gets `slo:sli_error:ratio_rate<window>{slo="<name>"}`: the share of bad events over the window (for a
time-based SLO, the share of rule evaluations that found `slo:bad_state:bool` at 1). The alerts are the SRE workbook's ("Alerting on SLOs",
table 6): a fast burn (14.4x the error budget over 1 h and 5 m, or 6x over 6 h and 30 m: 2 % and 5 % of a 30-day
budget) and a slow burn (3x over 1 d and 2 h, or 1x over 3 d and 6 h: 10 % of the budget). The short window of
each pair makes the alert clear soon after the problem stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent / "rules" / "slo.rules.yml"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
HTTP = "bazaar_http_request_duration_seconds"


@dataclass(frozen=True)
class Burn:
    severity: str
    factor_long: tuple[float, str, str]  # (burn factor, long window, short window)
    factor_other: tuple[float, str, str]
    for_: str


FAST = Burn("page", (14.4, "1h", "5m"), (6.0, "6h", "30m"), "2m")
SLOW = Burn("ticket", (3.0, "1d", "2h"), (1.0, "3d", "6h"), "15m")


@dataclass(frozen=True)
class Slo:
    name: str  # the `slo` label, and the anchor of its section in docs/slo.md
    alert: str  # CamelCase stem of its alerts' names
    objective: float  # the share of good events (or minutes) over 30 days
    what: str  # one line for the alerts' descriptions
    errors: str = ""  # PromQL of bad events per second over `{w}` (a ratio SLO)
    total: str = ""  # PromQL of all events per second over `{w}`
    bad_state: str = ""  # PromQL that is 1 while the system is in a bad state (a time-based SLO)
    fast_severity: str = "page"

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 6)

    def ratio(self, window: str) -> str:
        if self.bad_state:  # the share of evaluations (every minute or so) that found the bad state
            return f'avg_over_time(slo:bad_state:bool{{slo="{self.name}"}}[{window}])'
        errors, total = self.errors.replace("{w}", window), self.total.replace("{w}", window)
        return f"({errors} or vector(0))\n/\n{total}"


SLOS = (
    Slo(
        name="order_placement",
        alert="OrderPlacement",
        objective=0.995,
        what="order placements (POST /v1/orders) answered with a server error",
        errors=f'sum(rate({HTTP}_count{{route="/v1/orders",method="POST",status=~"5.."}}[{{w}}]))',
        total=f'sum(rate({HTTP}_count{{route="/v1/orders",method="POST"}}[{{w}}]))',
    ),
    Slo(
        name="search_latency",
        alert="SearchLatency",
        objective=0.99,
        what="searches (GET /v1/search/listings) slower than 250 ms or failed",
        errors=(
            f'sum(rate({HTTP}_count{{route="/v1/search/listings",method="GET"}}[{{w}}]))\n- ('
            f'sum(rate({HTTP}_bucket{{route="/v1/search/listings",method="GET",status!~"5..",le="0.25"}}[{{w}}]))'
            " or vector(0))"
        ),
        total=f'sum(rate({HTTP}_count{{route="/v1/search/listings",method="GET"}}[{{w}}]))',
    ),
    Slo(
        name="payment_success",
        alert="PaymentSuccess",
        objective=0.995,
        what="money calls to the payment provider that got no answer or were refused as invalid",
        errors='sum(rate(bazaar_payment_calls{outcome=~"error|rejected"}[{w}]))',
        total="sum(rate(bazaar_payment_calls[{w}]))",
    ),
    Slo(
        name="notification_delivery",
        alert="NotificationDelivery",
        objective=0.999,
        what="emails dead-lettered (failed after their last attempt) instead of sent",
        errors=(
            "sum(max without (instance) "
            '(rate(bazaar_notification_deliveries_total{channel="email",outcome="dead_lettered"}[{w}])))'
        ),
        total='sum(max without (instance) (rate(bazaar_notification_deliveries_total{channel="email"}[{w}])))',
    ),
    Slo(
        name="reconciliation_drift",
        alert="ReconciliationDrift",
        objective=0.99,
        what="minutes with an open reconciliation discrepancy (our books and the provider disagree)",
        bad_state="(sum(max without (instance) (bazaar_reconciliation_open_discrepancies)) or vector(0)) > bool 0",
        fast_severity="ticket",  # money to look into in working hours, not a night page
    ),
)


def _quoted(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _block(text: str, indent: int) -> str:
    pad = " " * indent
    return "|\n" + "\n".join(pad + line for line in text.splitlines())


def _alert(slo: Slo, burn: Burn, speed: str) -> str:
    def pair(factor: float, long: str, short: str) -> str:
        threshold = f"({factor} * {slo.budget})"
        return (
            f'slo:sli_error:ratio_rate{long}{{slo="{slo.name}"}} > {threshold}\n'
            f'and slo:sli_error:ratio_rate{short}{{slo="{slo.name}"}} > {threshold}'
        )

    expr = f"(\n{pair(*burn.factor_long)}\n)\nor\n(\n{pair(*burn.factor_other)}\n)"
    severity = slo.fast_severity if burn is FAST else burn.severity
    budget_pct = f"{slo.budget * 100:g}"
    return "\n".join(
        [
            f"      - alert: {slo.alert}ErrorBudgetBurn{speed}",
            f"        expr: {_block(expr, 10)}",
            f"        for: {burn.for_}",
            "        labels:",
            f"          severity: {severity}",
            f"          slo: {slo.name}",
            "        annotations:",
            f"          summary: {_quoted(f'{slo.name} is burning its error budget {speed.lower()}')}",
            "          description: "
            + _quoted(
                f"Too many {slo.what} (objective {slo.objective * 100:g} %, budget {budget_pct} % over 30 days)."
            ),
            f"          runbook: {_quoted('docs/slo.md#' + slo.name.replace('_', '-'))}",
        ]
    )


def render() -> str:
    lines = [
        "# Generated by deploy/prometheus/generate_rules.py from its SLOS table (targets: docs/slo.md). Do not edit:",
        "# change the table and run the script (tests/deploy/test_prometheus.py checks the two agree).",
        "groups:",
    ]
    for slo in SLOS:
        lines += [f"  - name: slo-{slo.name}", "    rules:"]
        if slo.bad_state:  # recorded first: the ratios below average it (rules of a group run in order)
            lines += [
                "      - record: slo:bad_state:bool",
                f"        expr: {_block(slo.bad_state, 10)}",
                "        labels:",
                f"          slo: {slo.name}",
            ]
        for window in WINDOWS:
            lines += [
                "      - record: slo:sli_error:ratio_rate" + window,
                f"        expr: {_block(slo.ratio(window), 10)}",
                "        labels:",
                f"          slo: {slo.name}",
            ]
        lines += [
            "      - record: slo:objective:ratio",
            f"        expr: vector({slo.objective})",
            "        labels:",
            f"          slo: {slo.name}",
        ]
        lines += [_alert(slo, FAST, "Fast"), _alert(slo, SLOW, "Slow")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
