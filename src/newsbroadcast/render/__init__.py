"""Pure rendering: data in, ``(subject, html, text)`` or post text out.

templates (Jinja2 environment, sanitising), i18n, email (render once per edition variant),
social (fitting a post to a channel). Imports nothing that does I/O: of ours only config's
model, errors and subscribers.tokens (HMAC arithmetic); stored rows are read, never queried.
"""
