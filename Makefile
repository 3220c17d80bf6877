# Thin entry points; the logic lives in devstack/ (Python).
PY ?= python3
VENV := .venv/bin/python

.PHONY: run test test-long bootstrap lint bench bench-orders bench-relevance

bootstrap:
	$(PY) devstack/bootstrap.py

run: bootstrap
	$(VENV) -m devstack run

test: bootstrap
	$(VENV) -m devstack test

# Nightly-style: the order workflow's property test with Hypothesis profile `long` (tests/conftest.py).
test-long: bootstrap
	$(VENV) -m pytest tests/workflows/test_order_properties.py --hypothesis-profile=long
	SCHEMATHESIS_MAX_EXAMPLES=200 SCHEMATHESIS_STATEFUL_STEPS=20 $(VENV) -m pytest tests/api/test_contract.py -k schemathesis

lint: bootstrap
	$(VENV) -m ruff check . && $(VENV) -m mypy .

bench: bootstrap
	$(VENV) bench/search.py

bench-orders: bootstrap
	$(VENV) bench/orders.py

# NDCG@10 and MRR@10 of the judged searches (tests/data/relevance.json), Meilisearch and the PostgreSQL fallback.
bench-relevance: bootstrap
	$(VENV) bench/relevance.py
