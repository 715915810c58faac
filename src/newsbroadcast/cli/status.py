"""`status`: what was sent, what waits, how the sources fare."""

from __future__ import annotations

import argparse

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsbroadcast import db
from newsbroadcast.cli.common import EXIT_OK, open_engine, site_config
from newsbroadcast.config.model import Config
from newsbroadcast.db.models import (
    Article,
    Delivery,
    Edition,
    Post,
    SendStatus,
    SourceState,
    Subscriber,
    TransactionalEmail,
    utcnow,
)


def _print_transactional_error(session: Session) -> None:
    """Why the latest confirmation email that has not gone out waits or failed."""
    latest = session.execute(
        select(TransactionalEmail.status, TransactionalEmail.last_error)
        .where(
            TransactionalEmail.status.in_([SendStatus.queued, SendStatus.failed]),
            TransactionalEmail.last_error.is_not(None),
        )
        .order_by(TransactionalEmail.id.desc())
        .limit(1)
    ).first()
    if latest is not None:
        print(f"  last {latest.status}: {latest.last_error}")


def cmd_status(args: argparse.Namespace) -> int:
    config = site_config(args)
    engine = open_engine(config)
    with db.sessions(engine)() as session:
        from newsbroadcast.outbox.retention import delivery_counts

        outbox = (("deliveries", Delivery), ("posts", Post))
        for label, model in (*outbox, ("confirmation emails", TransactionalEmail)):
            counts: dict[str, int] = {
                str(k): v
                for k, v in session.execute(
                    select(model.status, func.count()).group_by(model.status)
                ).tuples()
            }
            if model is Delivery:  # with those folded by erasure and retention
                counts = delivery_counts(session)
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
            print(f"{label}: {shown}")
        _print_transactional_error(session)
        subs = dict(
            session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
            .tuples()
            .all()
        )
        print("subscribers: " + (", ".join(f"{k} {v}" for k, v in sorted(subs.items())) or "none"))
        from newsbroadcast.outbox.steering import progress

        running = progress(session, utcnow())
        print("editions in progress:" if running else "editions in progress: none")
        for p in running:
            print(f"  {p.line()}")
        print("last editions:")
        editions = session.scalars(select(Edition).order_by(Edition.id.desc()).limit(10)).all()
        for e in editions:
            counted = delivery_counts(session, e.id)
            sent, total = counted.get("sent", 0), sum(counted.values())
            print(f"  #{e.id} {e.digest} {e.period} {e.status}: {sent}/{total} sent ({e.subject})")
        if not editions:
            print("  none yet")
        print("sources:")
        states = {s.name: s for s in session.scalars(select(SourceState))}
        # Pushed articles (the API, `articles add`) have a state but no configured source.
        names = [src.name for src in config.sources] + sorted(
            set(states) - {src.name for src in config.sources}
        )
        for name in names:
            s = states.get(name)
            if s is None:
                print(f"  {name}: never polled")
                continue
            health = "ok" if not s.last_error else f"ERROR {s.last_error}"
            print(
                f"  {name}: last poll {_when(s.last_polled_at)}, last success "
                f"{_when(s.last_success_at)}, {s.items_seen} items seen, {health}"
            )
            problems = (s.last_problems or "").splitlines()
            for problem in problems[:5]:
                print(f"    left out: {problem}")
            if len(problems) > 5:
                print(f"    … and {len(problems) - 5} more (see the log)")
            for note in (s.notes or "").splitlines()[:5]:
                print(f"    note: {note}")
        _print_channels(session, config)
        _print_failures(session, config)
    engine.dispose()
    return EXIT_OK


def _print_channels(session: Session, config: Config) -> None:
    """Each channel's waiting posts and when the next goes out, by its pace."""
    from newsbroadcast.outbox.pacing import outlook

    if not config.social:
        return
    print("channels:")
    now = utcnow()
    for channel in outlook(session, config.social, now):
        print(f"  {channel.line(now)}")


def _print_failures(session: Session, config: Config) -> None:
    """Channels and digests that cannot be planned, and the newest posts that failed."""
    from newsbroadcast.runtime.failures import current_failures

    # A channel or digest taken out of the configuration has no failure any more.
    configured = {("channel", c.name) for c in config.social} | {
        ("digest", d.name) for d in config.digests
    }
    steps = [f for f in current_failures(session) if (f.kind, f.name) in configured]
    failed_posts = select(Post, Article.title).join(Article, Article.id == Post.article_id)
    failed_posts = failed_posts.where(Post.status == SendStatus.failed)
    posts = session.execute(failed_posts.order_by(Post.id.desc()).limit(11)).all()
    print("failures:" if steps or posts else "failures: none")
    for f in steps:
        print(
            f"  {f.kind} {f.name}: failing since {_when(f.since)}, last {_when(f.last_at)}: "
            f"{f.error}"
        )
    for post, title in posts[:10]:
        print(
            f"  post of article {post.article_id} on {post.channel} ({title}), "
            f"planned {_when(post.created_at)}: {post.last_error}"
        )
    if len(posts) > 10:
        print("  … and more failed posts (newest shown)")


def _when(t: object) -> str:
    return "never" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"
