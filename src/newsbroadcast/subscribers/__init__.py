"""The audience's life: registry (add, import), lifecycle (sign-up, confirm, preferences,
unsubscribe, erase), suppressions, tokens (signed links), confirmation (the opt-in email),
mailbox (replies and DSNs), bounces (the one classifier).

May import db, config, render, transports, errors. Nothing of planning or dispatch.
"""
