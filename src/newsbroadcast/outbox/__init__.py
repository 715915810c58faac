"""The outbox rows' life: claims and leases, steering (pause, resume, cancel, progress),
the shared rate limit, a channel's pace, recording a sent delivery.

May import db, config, errors. Sends nothing itself (that is dispatch/).
"""
