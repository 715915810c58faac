"""Sends what is due: claims outbox rows, sends them through transports/ and channels/,
records the outcome; also the worker process, the dry run and the previews.

May import outbox, render, transports, channels, subscribers (bounces, suppressions), db,
config, errors. Nothing of sources, articles' ingest, web or cli; the service that wires
it is handed in (a type only, never imported).
"""
