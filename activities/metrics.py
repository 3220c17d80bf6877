"""Business metrics the worker records as its activities run, on the Temporal SDK's metric meter: they are
served with the SDK's own metrics (task latencies, schedule-to-start, ...) on the worker's Prometheus endpoint
(`WORKER_METRICS_BIND_ADDRESS`, see `worker.runtime_for`), and are no-ops in a worker without one (tests).

- `bazaar_order_transitions{from_status, status}` (counter): every saved order transition, once (a retried
  save that finds it done counts nothing).
- `bazaar_order_state_seconds{status}` (histogram): how long an order stayed in `status` before it left it,
  on the database clock.
- `bazaar_payment_calls{kind, outcome}` (counter): every money call to the provider: `succeeded`, `declined`
  (the card or the provider said no: an answer about the payment, a business outcome), `rejected` (the
  provider refused the request: final, usually a bug or a bad account), `error` (no answer or a 5xx: retried).

Labels are closed sets (order states, payment kinds, the four outcomes): never ids.
"""

from __future__ import annotations

from temporalio import activity

ORDER_TRANSITIONS = "bazaar_order_transitions"
ORDER_STATE_SECONDS = "bazaar_order_state_seconds"
PAYMENT_CALLS = "bazaar_payment_calls"
# From a quick charge to the dispute window (7 days) and past it (review windows, stuck orders).
HOUR, DAY = 3600.0, 86400.0
STATE_SECONDS_BUCKETS = (
    1.0,
    5.0,
    30.0,
    60.0,
    300.0,
    HOUR,
    4 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
)

SUCCEEDED, DECLINED, REJECTED, ERROR = "succeeded", "declined", "rejected", "error"


def order_transition(from_status: str, status: str, seconds_in_state: float) -> None:
    """Count a saved transition and how long the order was in the state it left (str enums welcome)."""
    if not activity.in_activity():  # called directly (a test, a script): nothing to record on
        return
    meter = activity.metric_meter()
    meter.create_counter(
        ORDER_TRANSITIONS, "Order transitions saved, by the state left and entered"
    ).with_additional_attributes({"from_status": str(from_status), "status": str(status)}).add(1)
    meter.create_histogram_float(
        ORDER_STATE_SECONDS, "Time an order spent in a state before leaving it", unit="s"
    ).with_additional_attributes({"status": str(from_status)}).record(max(seconds_in_state, 0.0))


def payment_call(kind: str, outcome: str) -> None:
    """Count one money call to the provider by its outcome."""
    if not activity.in_activity():
        return
    activity.metric_meter().create_counter(
        PAYMENT_CALLS, "Money calls to the payment provider, by kind and outcome"
    ).with_additional_attributes({"kind": str(kind), "outcome": outcome}).add(1)
