"""Local Stripe-compatible server ("the sandbox") for Bazaar's payment provider and integration tests.

Run ``python -m stripe_sandbox --host 127.0.0.1 --port P`` or embed
:func:`stripe_sandbox.app.create_app`; point the official SDK at it with
``stripe.StripeClient("sk_test_...", base_addresses={"api": "http://127.0.0.1:P"})``.
"""
