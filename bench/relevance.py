"""Search relevance bench: NDCG@10 and MRR@10 of the judged searches (tests/data/relevance.json) over the
demo catalogue, through Meilisearch and through the PostgreSQL fallback, on services started for it.

    .venv/bin/python bench/relevance.py            # make bench-relevance; --show prints the hits of weak queries

What it does, in order:
1. Starts PostgreSQL and Meilisearch (devstack, free ports, a temp dir) and migrates the database.
2. Writes the demo catalogue's published listings (devstack/demo.py, what `make run` loads) into PostgreSQL
   and builds the index with the production reindex (the settings of bazaar/search/index.py).
3. Runs every judged query, first page of 10 in relevance order, through bazaar.search.query.search_meili
   and bazaar.search.fallback.search_postgres (what the API calls, and what it falls back to), and scores
   each result list.
The evaluation itself is tests/support/relevance.py (shared with tests/search_sync/test_relevance.py).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from processes import log, temp_stack  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

from bazaar.migrate import upgrade  # noqa: E402
from bazaar.search.meili import Meili  # noqa: E402
from bazaar.settings import Settings  # noqa: E402
from devstack.demo import LISTING_COUNT  # noqa: E402
from devstack.stack import Stack  # noqa: E402
from tests.support.relevance import (  # noqa: E402
    BACKENDS,
    JUDGED,
    Evaluation,
    evaluate,
    index_corpus,
    load_corpus,
    load_judged,
)

# Issue 13: NDCG@10 bars (must) and goals, per backend.
BARS = {"meilisearch": {"bar": 0.85, "goal": 0.92}, "postgres": {"bar": 0.6, "goal": 0.75}}


def print_table(evaluation: Evaluation, show_below: float | None) -> None:
    log(f"{'kind':12} {'query':34} {'meili ndcg':>10} {'rr':>5} {'pg ndcg':>9} {'rr':>5}")
    for s in evaluation.scored:
        log(
            f"{s.kind:12} {s.q[:32] + (' *' if s.held_out else ''):34} "
            f"{s.ndcg['meilisearch']:10.3f} {s.rr['meilisearch']:5.2f} "
            f"{s.ndcg['postgres']:9.3f} {s.rr['postgres']:5.2f}"
        )
        for backend in BACKENDS:
            if show_below is not None and s.ndcg[backend] < show_below:
                log(f"    {backend}: " + (" | ".join(s.top[backend]) or "(no hits)"))
    log("")
    for kind in evaluation.kinds():
        figures = [
            f"{b} ndcg {evaluation.mean('ndcg', b, kind):.3f} mrr {evaluation.mean('rr', b, kind):.3f}"
            for b in BACKENDS
        ]
        log(f"  {kind:12} " + "   ".join(figures))
    log("  (* held out: judged after the tuning, not tuned on)")
    for held_out, name in ((False, "tuned on"), (True, "held out")):
        figures = [
            f"{b} ndcg {evaluation.mean('ndcg', b, held_out=held_out):.3f} "
            f"mrr {evaluation.mean('rr', b, held_out=held_out):.3f}"
            for b in BACKENDS
        ]
        log(f"  {name:12} " + "   ".join(figures))
    for backend in BACKENDS:
        log(
            f"{backend:12} NDCG@10 {evaluation.mean('ndcg', backend):.4f}  MRR@10 {evaluation.mean('rr', backend):.4f}"
            f"  (bar {BARS[backend]['bar']}, goal {BARS[backend]['goal']})"
        )


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(
        _env_file=None,
        database_url=stack.database_url,
        meili_url=stack.meili_url,
        meili_master_key=stack.meili_master_key,
        meili_index="listings",
    )
    judged = load_judged(args.judged)
    log(f"loading the demo catalogue ({args.count} listings, the published ones) into PostgreSQL ...")
    corpus = await load_corpus(settings.database_url, args.count)
    log(f"indexing {len(corpus)} listings (bazaar reindex) ...")
    index_seconds = await index_corpus(settings)
    log(f"running {len(judged)} judged queries through Meilisearch and the PostgreSQL fallback ...")
    engine = create_async_engine(settings.database_url, pool_size=2)
    meili = Meili(settings.meili_url, stack.meili_master_key, timeout=30)
    try:
        evaluation = await evaluate(
            judged,
            corpus,
            meili=meili,
            index=settings.meili_index,
            sessionmaker=async_sessionmaker(engine, expire_on_commit=False),
        )
    finally:
        await meili.aclose()
        await engine.dispose()
    print_table(evaluation, args.show)
    figures = evaluation.figures()
    return {
        "queries": len(judged),
        "listings": len(corpus),
        "index_seconds": round(index_seconds, 2),
        "evaluation_seconds": round(evaluation.seconds, 2),
        **figures,
        "bars": BARS,
        "targets": {
            backend: {
                "ndcg_meets_bar": figures[backend]["ndcg_at_10"] >= BARS[backend]["bar"],
                "ndcg_meets_goal": figures[backend]["ndcg_at_10"] >= BARS[backend]["goal"],
            }
            for backend in BACKENDS
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--judged", type=Path, default=JUDGED, help="the judged query set (JSON)")
    parser.add_argument("--count", type=int, default=LISTING_COUNT, help="demo catalogue size (make run's)")
    parser.add_argument(
        "--show",
        type=float,
        default=None,
        metavar="NDCG",
        help="print the hits of queries scoring below this",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    with temp_stack("bazaar-relevance-", keep=args.keep, only=("postgres", "meilisearch")) as stack:
        log(f"starting PostgreSQL and Meilisearch in {stack.data_dir} ...")
        stack.start_infra()
        upgrade(stack.database_url)
        report = asyncio.run(measure(stack, args))
    report["judged_set"] = os.path.relpath(args.judged, ROOT)
    report["cpus"] = os.cpu_count()
    report["load_average_at_start"] = [round(x, 2) for x in load_at_start]
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
