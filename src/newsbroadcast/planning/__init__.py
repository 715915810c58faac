"""Decides what goes out and inserts the outbox rows (editions, deliveries, posts).

May import db, config, articles, render (post text, an edition's subject), errors. Never
dispatch, transports or channels: it sends nothing and owns no delivery state.
"""
