"""Temporal workflows: the durable state machines. Deterministic: no I/O, clocks or randomness here."""
