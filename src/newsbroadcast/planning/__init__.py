"""Decides what goes out and inserts the outbox rows (editions, deliveries, posts).

May import db, config, articles, errors. Never sends anything and owns no delivery state.
"""
