"""The capacity model (bench/capacity.py): it runs on small and large inputs, its answers grow with the load and
stay sane, every per-unit figure it uses says where it comes from (and quotes that place truly), and the worked
example pasted in docs/scaling.md is what the script prints now. No services needed."""

from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bazaar.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "bench" / "capacity.py"
FIGURES = ROOT / "bench" / "capacity_figures.json"
SCALING = ROOT / "docs" / "scaling.md"
KINDS = {"measured", "derived", "counted", "setting", "external", "estimate", "assumption"}

SMALL = (
    "--orders-per-day 1000 --searches-per-second 1 --listing-changes-per-second 0.1 --listings 5000".split()
)
LARGE = "--orders-per-day 5e6 --searches-per-second 5000 --listing-changes-per-second 300 --listings 20000000".split()


def run(args: list[str]) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["bench"] == "capacity"
    return done.stdout, report


def args_with(**overrides: float) -> list[str]:
    base = {
        "orders-per-day": 100_000.0,
        "searches-per-second": 200.0,
        "listing-changes-per-second": 20.0,
        "listings": 1_000_000,
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})
    text = {name: str(int(v)) if float(v).is_integer() else str(v) for name, v in base.items()}
    return [part for name, value in text.items() for part in (f"--{name}", value)]


def numbers(value: Any) -> list[float]:
    """Every number in a JSON value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in numbers(v)]
    raise AssertionError(f"unexpected {value!r}")


@pytest.mark.parametrize("args", [SMALL, LARGE], ids=["small", "large"])
def test_small_and_large_inputs_give_sane_answers(args: list[str]) -> None:
    stdout, report = run(args)
    assert "orders workers" in stdout and "Temporal history shards" in stdout
    assert all(math.isfinite(n) and n >= 0 for n in numbers(report)), report
    shards = report["temporal"]["history_shards"]
    assert shards >= 512 and shards & (shards - 1) == 0, shards  # a power of two, never under 512
    assert shards >= report["temporal"]["shards_needed_with_growth"]
    assert all(n >= 2 for n in report["processes"].values()), report["processes"]
    assert report["meilisearch"]["nodes"] >= 2
    for size in ("persistence_gb", "bytes_per_order"):
        assert report["temporal"][size] > 0
    for size in ("bytes_per_order", "gb_per_year", "size_gb_after_one_year", "connections_max"):
        assert report["postgres"][size] > 0
    meili = report["meilisearch"]
    assert meili["index_gb"] > 0 and meili["ram_gb_per_node"] > meili["index_gb"]
    assert meili["batch_seconds"] > 0 and meili["freshness_p99_seconds"] >= meili["batch_seconds"]
    assert report["cores_to_provision"] >= sum(report["cores_at_peak"].values())


def test_large_input_needs_more_of_everything_and_says_what_breaks() -> None:
    _, small = run(SMALL)
    _, large = run(LARGE)
    assert large["processes"]["orders"] > small["processes"]["orders"]
    assert large["processes"]["api"] > small["processes"]["api"]
    assert large["meilisearch"]["nodes"] > small["meilisearch"]["nodes"]
    assert large["temporal"]["history_shards"] > small["temporal"]["history_shards"]
    assert large["cores_to_provision"] > small["cores_to_provision"]
    assert not [w for w in small["warnings"] if "connections" not in w], small["warnings"]
    assert any("search-sync" in w for w in large["warnings"]), large["warnings"]
    assert any("change-to-searchable" in w for w in large["warnings"]), large["warnings"]
    assert any("connections" in w for w in large["warnings"]), large["warnings"]
    # 5,000,000 orders/day is ~174 orders/s at the peak, two provider calls each: far over 25/s.
    assert large["provider"]["requests_per_s_peak"] > large["provider"]["limit_per_s"] == 25
    assert any("PAYMENT_REQUESTS_PER_SECOND" in w for w in large["warnings"]), large["warnings"]
    _, raised = run([*LARGE, "--provider-limit", "1000"])
    assert not any("PAYMENT_REQUESTS_PER_SECOND" in w for w in raised["warnings"]), raised["warnings"]


def test_the_provider_limit_defaults_to_the_settings() -> None:
    _, report = run(list(SMALL))
    assert report["inputs"]["provider_limit"] == Settings.model_fields["payment_requests_per_second"].default


def test_more_orders_never_need_less() -> None:
    reports = [run(args_with(orders_per_day=n))[1] for n in (0, 1e3, 1e5, 1e6, 1e7, 1e8)]
    for before, after in itertools.pairwise(reports):
        for context, count in before["processes"].items():
            assert after["processes"][context] >= count, (context, before["processes"], after["processes"])
        assert after["temporal"]["history_shards"] >= before["temporal"]["history_shards"]
        assert after["temporal"]["persistence_gb"] > before["temporal"]["persistence_gb"]
        assert after["postgres"]["gb_per_year"] >= before["postgres"]["gb_per_year"]
        assert after["postgres"]["connections_max"] >= before["postgres"]["connections_max"]
        assert after["cores_to_provision"] >= before["cores_to_provision"]
        assert after["inputs"]["open_orders"] >= before["inputs"]["open_orders"]
    assert reports[-1]["processes"]["orders"] > reports[0]["processes"]["orders"]


def test_more_searches_and_listings_never_need_less() -> None:
    by_searches = [run(args_with(searches_per_second=n))[1] for n in (0, 100, 1_000, 10_000)]
    for before, after in itertools.pairwise(by_searches):
        assert after["meilisearch"]["nodes"] >= before["meilisearch"]["nodes"]
        assert after["processes"]["api"] >= before["processes"]["api"]
    assert by_searches[-1]["meilisearch"]["nodes"] > by_searches[0]["meilisearch"]["nodes"]
    by_listings = [
        run(args_with(listings=n))[1]["meilisearch"] for n in (10_000, 100_000, 1_000_000, 5_000_000)
    ]
    for before, after in itertools.pairwise(by_listings):
        assert after["batch_seconds"] > before["batch_seconds"]
        assert after["freshness_p99_seconds"] > before["freshness_p99_seconds"]
        assert after["ram_gb_per_node"] > before["ram_gb_per_node"]
        assert after["nodes"] >= before["nodes"]


def test_more_growth_means_more_shards_and_headroom_more_processes() -> None:
    shards = [run([*args_with(orders_per_day=1e7), "--growth", str(g)])[1] for g in (1, 10, 100)]
    counts = [r["temporal"]["history_shards"] for r in shards]
    assert counts == sorted(counts) and counts[-1] > counts[0], counts
    relaxed = run([*args_with(orders_per_day=1e7), "--headroom", "0.9"])[1]
    tight = run([*args_with(orders_per_day=1e7), "--headroom", "0.3"])[1]
    assert tight["processes"]["orders"] > relaxed["processes"]["orders"]


def test_open_orders_can_be_given() -> None:
    _, derived = run(args_with())
    assert derived["inputs"]["open_orders"] == round(100_000 * derived["peak"]["open_days"])
    _, given = run([*args_with(), "--open-orders", "100"])
    assert given["inputs"]["open_orders"] == 100
    assert given["orders_worker_rss_mb"] < derived["orders_worker_rss_mb"]


@pytest.mark.parametrize("bad", [["--headroom", "0"], ["--headroom", "1.5"], ["--peak-factor", "0.5"]])
def test_refuses_nonsense(bad: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args_with(), *bad],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_figure_says_where_it_comes_from() -> None:
    figures: dict[str, dict[str, Any]] = json.loads(FIGURES.read_text(encoding="utf-8"))["figures"]
    assert figures
    for name, figure in figures.items():
        assert isinstance(figure.get("source"), str) and len(figure["source"]) > 20, name
        assert figure.get("kind") in KINDS, (name, figure.get("kind"))
        assert isinstance(figure.get("unit"), str) and figure["unit"], name
        value = figure["value"]
        values = list(value.values()) if isinstance(value, dict) else [value]
        assert values and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values
        ), name
        if figure["kind"] in ("measured", "derived"):
            # A measurement names its document; the quoted text is really there (whitespace aside).
            doc = figure["source"].split(",")[0]
            assert doc.startswith("docs/") and (ROOT / doc).is_file(), (name, doc)
            quotes = figure.get("quote")
            assert quotes, f"{name}: a measured or derived figure quotes its source"
            text = flat((ROOT / doc).read_text(encoding="utf-8"))
            for quote in [quotes] if isinstance(quotes, str) else quotes:
                assert flat(quote) in text, (name, quote)


def test_every_figure_is_used_by_the_script() -> None:
    figures = json.loads(FIGURES.read_text(encoding="utf-8"))["figures"]
    source = SCRIPT.read_text(encoding="utf-8")
    shapes = re.findall(r'"(\w+)"', source[source.index("SHAPES = ") :].splitlines()[0])
    for name in figures:
        per_shape = [p for p in ("search_api_cpu_ms_", "search_meili_cpu_ms_") if name.startswith(p)]
        if per_shape:
            assert name.removeprefix(per_shape[0]) in shapes and f'f"{per_shape[0]}{{s}}"' in source, name
        else:
            assert f'"{name}"' in source, f"{name} is in the figures file but the script never reads it"


def example() -> tuple[list[str], str, str]:
    """The command of docs/scaling.md's worked example, its pasted table and its pasted JSON line."""
    text = SCALING.read_text(encoding="utf-8")
    block = re.search(r"<!-- capacity-example:start -->(.*?)<!-- capacity-example:end -->", text, re.S)
    assert block, "docs/scaling.md has the worked example between capacity-example markers"
    fences = re.findall(r"```(\w+)\n(.*?)```", block.group(1), re.S)
    assert [lang for lang, _ in fences] == ["sh", "text", "json"], [lang for lang, _ in fences]
    command = shlex.split(fences[0][1].replace("\\\n", " "))
    assert command[:2] == [".venv/bin/python", "bench/capacity.py"], command
    return command[2:], fences[1][1], fences[2][1]


def test_the_worked_example_in_docs_scaling_is_what_the_script_prints() -> None:
    args, table, last = example()
    stdout, _ = run(args)
    lines = stdout.rstrip("\n").split("\n")
    assert "\n".join(lines[:-1]) == table.rstrip("\n"), (
        "docs/scaling.md's example table is stale: paste the output of the command above it again"
    )
    assert lines[-1] == last.strip(), "docs/scaling.md's example JSON line is stale: paste it again"
