"""Integrations: what apps (an ERP, a shipping tool, a seller's own shop) use to hear about Bazaar.

- `scope`: whose events an app sees (a seller's, or the platform's: all of them);
- `keys`: API keys (`bzk_...`), the apps' credentials, hashed at rest;
- `events`: the event catalogue and the one way to write an event, in the transaction of the change;
- `feed`: `GET /v1/events`, every event once, in transaction order;
- `endpoints`: webhook endpoints and their signing secrets (Standard Webhooks), rotated with an overlap;
- `delivery`: the fan-out of events to endpoints and their signed, retried, logged deliveries (the `sender`
  process runs it beside the notification outbox: activities/notifications.py).
"""
