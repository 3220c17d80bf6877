"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories [--all]`.

Run it when a deliberate, patched change to a workflow adds new paths; never to "fix" a failing replay
(that failure is the signal that running workflows would break; see docs/workflow-versioning.md).
By default it records only scenarios that have no history yet: the stored ones were made by older code
and are the proof that workflows started by that code still replay. `--all` re-records everything (only
before a first release, or after the old versions' workflows have all closed).
`order_transfer_failed_before_retry.json` is not made here: it was recorded once with the workflow code
before the payout-retry patch (see docs/workflow-versioning.md) and must never be re-recorded.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.binaries import venv_binary
from tests.workflows.conftest import SEARCH_ATTRIBUTES
from tests.workflows.fakes import FakeWorld
from tests.workflows.test_order_workflow import run_to_end
from tests.workflows.test_provider_events import RECORDED, record

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
SCENARIOS = {
    "order_completed": FakeWorld(stock=1),
    "order_payment_failed": FakeWorld(decline=True),
    "order_sold_out": FakeWorld(stock=0),
}


async def main(everything: bool) -> None:
    def wanted(name: str) -> bool:
        return everything or not (HISTORIES / f"{name}.json").exists()

    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--headless"],
    ) as env:
        for name, world in SCENARIOS.items():
            if wanted(name):
                _, history = await run_to_end(env, world)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}")
        # Dispute, cancellation, chargeback and payout-retry paths (tests/workflows/test_provider_events.py).
        for name in RECORDED:
            if wanted(name):
                _, history = await record(env, name)
                (HISTORIES / f"{name}.json").write_text(history.to_json())
                print(f"recorded {name}")


if __name__ == "__main__":
    asyncio.run(main("--all" in sys.argv[1:]))
