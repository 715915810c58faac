"""`articles add`, `api hash-token` and `post preview`: articles by hand and what
their posts would say. Thin: parse, call, print.
"""

from __future__ import annotations

import argparse
import sys

from newsbroadcast import db
from newsbroadcast.cli.common import EXIT_FAILED, EXIT_OK, open_engine, site_config
from newsbroadcast.db.models import utcnow
from newsbroadcast.errors import InputError, NewsBroadcastError


def cmd_articles_add(args: argparse.Namespace) -> int:
    from newsbroadcast.articles.ingest import user_agent
    from newsbroadcast.articles.push import draft_from_page, record_failure, store_pushed

    config = site_config(args)
    engine = open_engine(config)
    sessions = db.sessions(engine)
    try:
        try:
            draft = draft_from_page(args.url, None, user_agent(config))
        except NewsBroadcastError as e:
            record_failure(sessions, args.source, utcnow(), str(e))
            raise
        stored = store_pushed(sessions, args.source, [draft], utcnow())
    finally:
        engine.dispose()
    verb = "added" if stored.created else "updated" if stored.updated else "already there"
    print(f"{verb}: {draft.title} <{draft.url}>")
    return EXIT_OK


def cmd_api_hash_token(args: argparse.Namespace) -> int:
    import secrets

    from newsbroadcast.articles.push import hash_token

    if args.stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise InputError("no token on stdin")
    else:
        token = secrets.token_urlsafe(32)
        print(f"token (give it to the client; it is not stored): {token}")
    print(f"for api.tokens in the config: {hash_token(token)}")
    return EXIT_OK


def cmd_post_preview(args: argparse.Namespace) -> int:
    from newsbroadcast.dispatch.post_preview import payload_lines, preview_posts
    from newsbroadcast.service import Service

    service = Service(site_config(args))
    try:
        article, previews = preview_posts(service, args.article_id)
    finally:
        service.close()
    if args.json:
        import json

        shown = {
            "article": {"id": article.id, "title": article.title, "url": article.url},
            "posts": [p.as_json() for p in previews],
        }
        print(json.dumps(shown, ensure_ascii=False, indent=2, default=str))
        return EXIT_OK if all(p.fits for p in previews) else EXIT_FAILED
    print(f"article {article.id}: {article.title}")
    for p in previews:
        verdict = "fits" if p.fits else "TOO LONG"
        print(f"\n== {p.channel} ({p.kind}): {p.length}/{p.limit} {verdict} ==")
        if p.payload is None:
            print(p.problem or p.text)
        else:  # the text is in the payload, as the network gets it
            print("\n".join(payload_lines(p.payload)))
    return EXIT_OK if all(p.fits for p in previews) else EXIT_FAILED
