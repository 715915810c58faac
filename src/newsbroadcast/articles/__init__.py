"""The article store: store (upsert drafts, dedupe by GUID and canonical URL, edits stay
edits), ingest (poll the sources into the store, record their health), push (articles
pushed over the API).

May import sources, db, config, errors. Nothing of planning or distribution.
"""
