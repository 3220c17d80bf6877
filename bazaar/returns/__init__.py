"""Returns: a buyer sends some of an order's lines back and is refunded (workflows/returns.py)."""
