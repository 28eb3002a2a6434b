"""The multi-tenant ingest API and its worker: pure logic (no AWS).

- ``request``: POST /ingest bodies -> validated internal messages (or a 4xx ``ApiError``);
- ``auth`` / ``keys``: API keys, hashed, and the per-environment lookup cache;
- ``listing``: GET /logs parameters and cursors;
- ``worker``: one message -> one redacted, idempotently stored item.
"""
