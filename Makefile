# Thin entry points; the logic lives in devstack/ (Python).
PY ?= python3
VENV := .venv/bin/python

.PHONY: run test bootstrap lint bench

bootstrap:
	$(PY) devstack/bootstrap.py

run: bootstrap
	$(VENV) -m devstack run

test: bootstrap
	$(VENV) -m devstack test

lint: bootstrap
	$(VENV) -m ruff check . && $(VENV) -m mypy .

bench: bootstrap
	$(VENV) bench/search.py
