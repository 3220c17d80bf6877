"""Listings: their lifecycle (draft, active, sold, archived) and rules, the hot-listing cache and popularity."""
