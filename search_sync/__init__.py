"""Search sync: drains the search outbox into Meilisearch."""
