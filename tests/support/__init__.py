"""Helpers shared by the tests (no tests here). Test modules import from these; none imports from another
test module, and conftest.py files hold only fixtures.

- `http`: the real API over HTTP as real users (register, tokens, listings, a support user, wait_until).
- `money`: the provider's records in the sandbox, its faults, the ledger (SQL), orders driven over HTTP.
- `reconciliation`: window edges and a reconciliation window run on the test stack's worker.
- `search`: the private search stack (its own database, Meilisearch, search_sync and API) and its helpers.
- `outbox`: users for the notification outbox tests (their database: the `outbox_url`/`db` fixtures).
- `sandbox`: the Stripe sandbox as a subprocess, for tests/stripe_sandbox/.
- `compose`: docker-compose.yml, its schema and compose's variable interpolation.
- `binaries`: the CLI binaries installed into the virtualenv (temporal, temporal-test-server, ...).
- `temporal`: the search attributes the workflow tests' dev server registers.
- `workflow_fakes`: `FakeWorld`, fake activities that record what the workflows asked (its returns' in
  `return_fakes`: `FakeReturns`).
- `returns`: the return workflow under test: a return started as the API does, its moves and history.
- `orders`: the order workflow under test: the actors, orders placed as the API does, provider events.
- `order_scenarios`: the order scenarios recorded as replay histories (`RECORDED`).
- the order model, a fake database and provider with real semantics for the property test: `order_world`
  (its state), `order_model` (`World`: what the activities do to it), `order_activities` (`Router`: the
  Temporal activities), and the property test's `order_machine` (rules), `order_checks` (invariant checks)
  and `order_harness` (its own event loop, client and worker).
"""
