"""Accounts that hold against abuse: registration that does not reveal which emails exist, email verification
and password reset by single-use mailed tokens, the password policy, and login sessions with rotated refresh
tokens (credentials and the per-request check: bazaar.auth)."""
