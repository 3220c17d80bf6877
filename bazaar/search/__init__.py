"""Listing search: query building, the Meilisearch client and index settings, the PostgreSQL fallback."""
