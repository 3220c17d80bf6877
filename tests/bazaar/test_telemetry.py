"""bazaar/telemetry.py without services: the JSON-lines span files devstack writes and `python -m cli trace`
reads back as a tree, the trace id on log lines, and the traceparent the outbox stores and the sender resumes."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bazaar import telemetry

ROOT = Path(__file__).resolve().parents[2]


def _provider(tmp_path: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": f"bazaar-{service}"}))
    provider.add_span_processor(
        SimpleSpanProcessor(telemetry.JsonLinesSpanExporter(tmp_path / f"{service}.jsonl"))
    )
    return provider


def test_a_trace_across_two_processes_files_reads_back_as_one_tree(tmp_path: Path) -> None:
    api = _provider(tmp_path, "api").get_tracer("test")
    worker = _provider(tmp_path, "worker").get_tracer("test")
    with api.start_as_current_span("POST /v1/orders") as root:
        stored = telemetry.traceparent()  # what the outbox row keeps
        with api.start_as_current_span("StartUpdateWithStartWorkflow:Order"):
            pass
    with worker.start_as_current_span("RunActivity:charge", context=telemetry.context_of(stored)):
        with worker.start_as_current_span("POST") as call:
            call.set_status(trace.Status(trace.StatusCode.ERROR))
    with api.start_as_current_span("GET /healthz"):  # another trace: not read back
        pass

    trace_id = f"{root.get_span_context().trace_id:032x}"
    with telemetry.resumed(stored):  # the sender's log lines about the row carry the request's id
        assert telemetry.trace_id() == trace_id
    assert telemetry.trace_id() is None
    spans = telemetry.read_trace(tmp_path, trace_id.upper())
    assert [(s["service"], s["name"]) for s in spans] == [
        ("bazaar-api", "POST /v1/orders"),
        ("bazaar-api", "StartUpdateWithStartWorkflow:Order"),
        ("bazaar-worker", "RunActivity:charge"),
        ("bazaar-worker", "POST"),
    ]
    tree = telemetry.format_trace(spans).splitlines()
    assert [re.sub(r"^ *[0-9.]+ ms  ", "", line) for line in tree] == [  # duration, service, indented name
        "bazaar-api       POST /v1/orders",
        "bazaar-api         StartUpdateWithStartWorkflow:Order",
        "bazaar-worker      RunActivity:charge",
        "bazaar-worker        POST  [ERROR]",
    ]

    shown = subprocess.run(
        [sys.executable, "-m", "cli", "trace", trace_id, "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert shown.stdout.splitlines() == tree
    missing = subprocess.run(
        [sys.executable, "-m", "cli", "trace", "0" * 32, "--dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "no spans of trace" in missing.stderr


def test_log_lines_inside_a_trace_end_with_its_id() -> None:
    tracer = TracerProvider().get_tracer("test")
    formatter = telemetry.TraceFormatter(telemetry.LOG_FORMAT)
    record = logging.LogRecord("api", logging.WARNING, __file__, 1, "database unavailable", None, None)
    assert "trace_id=" not in formatter.format(record)
    with tracer.start_as_current_span("POST /v1/orders") as span:
        line = formatter.format(record)
    assert line.endswith(f"database unavailable trace_id={span.get_span_context().trace_id:032x}")
    wrapped = telemetry.TraceFormatter(inner=logging.Formatter("%(levelname)s: %(message)s"))
    with tracer.start_as_current_span("GET /v1/orders"):
        assert wrapped.format(record).startswith("WARNING: database unavailable trace_id=")


def test_no_trace_no_traceparent() -> None:
    assert telemetry.traceparent() is None and telemetry.trace_id() is None
    assert telemetry.context_of(None) is None
