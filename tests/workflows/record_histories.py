"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories`.

Run it when a deliberate, patched change to a workflow adds new paths; never to "fix" a failing replay
(that failure is the signal that running workflows would break; see docs/workflow-versioning.md).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.binaries import venv_binary
from tests.workflows.conftest import SEARCH_ATTRIBUTES
from tests.workflows.fakes import FakeWorld
from tests.workflows.test_order_workflow import run_to_end

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
SCENARIOS = {
    "order_completed": FakeWorld(stock=1),
    "order_payment_failed": FakeWorld(decline=True),
    "order_sold_out": FakeWorld(stock=0),
}


async def main() -> None:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--headless"],
    ) as env:
        for name, world in SCENARIOS.items():
            _, history = await run_to_end(env, world)
            (HISTORIES / f"{name}.json").write_text(history.to_json())
            print(f"recorded {name}")


if __name__ == "__main__":
    asyncio.run(main())
