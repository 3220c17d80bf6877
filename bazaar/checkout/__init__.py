"""Buying several listings at once: the buyer's cart (and, next, the checkout that pays for it in one charge)."""
