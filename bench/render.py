"""Per-recipient message build: newsbroadcast's prepared edition against the naive way.

    .venv/bin/python bench/render.py [recipients]

Naive: for every recipient, render the Jinja2 templates with the recipient's values, inline
the CSS, build an EmailMessage (text + HTML alternative, the same headers) and serialise it.
newsbroadcast: render and inline once (``prepare_edition``), then ``PreparedEdition.message``
per recipient (substitution into prepared bytes). Both build the same number of complete
messages for the same ten-story digest, measured in this run; the ratio is the point.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

import css_inline

from newsbroadcast.config.model import Config
from newsbroadcast.render.email import prepare_edition, template_context
from newsbroadcast.render.mime import make_message_id, recipient_links
from newsbroadcast.render.templates import make_environment
from newsbroadcast.render.views import EditionView, Recipient, StoryView

ROOT = Path(__file__).resolve().parent.parent
GOAL = 50.0


def site() -> tuple[Config, EditionView]:
    config = Config.model_validate(
        {
            "root": str(ROOT),
            "site": {
                "name": "Women in Uniform",
                "url": "https://newsroom.example.org",
                "public_url": "https://news.example.org",
                "from": "Women in Uniform <digest@newsroom.example.org>",
                "list_id": "digest.newsroom.example.org",
                "unsubscribe_mailto": "unsubscribe@newsroom.example.org",
                "secret": "bench-secret-0123456789",
            },
            "digests": [{"name": "daily", "cron": "0 7 * * *", "timezone": "Africa/Kigali"}],
        }
    )
    now = datetime(2026, 3, 2, 5, tzinfo=UTC)
    stories = [
        StoryView(
            title=f"Story {n}: women officers lead border patrol training in the east",
            url=f"https://newsroom.example.org/2026/03/story-{n}",
            summary=(
                "<p>Forty officers completed <em>twelve weeks</em> of training, "
                "<a href='https://newsroom.example.org/x'>the agency said</a>.</p>"
            )
            * 2,
            published_at=now - timedelta(hours=n),
            image=f"https://newsroom.example.org/img/{n}.jpg",
            author="Newsroom staff",
        )
        for n in range(10)
    ]
    return config, EditionView(1, "daily", "2026-03-02", now, stories)


def recipients(n: int) -> list[Recipient]:
    return [
        Recipient(i, f"reader{i}@example.org", f"Reader {i}" if i % 3 else None) for i in range(n)
    ]


def naive(config: Config, edition: EditionView, people: list[Recipient]) -> int:
    """The way without preparation: everything per recipient. Returns bytes built."""
    env = make_environment(ROOT / "templates")
    digest = config.digests[0]
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    html_t = env.get_template(f"email/{digest.template}.html.j2")
    text_t = env.get_template(f"email/{digest.template}.txt.j2")
    total = 0
    for r in people:
        context = template_context(env, config, digest, edition)
        links = recipient_links(config, r.subscriber_id)
        context.update(
            subscriber={"name": r.name, "email": r.email},
            unsubscribe_url=links["unsubscribe_url"],
            preferences_url=links["preferences_url"],
        )
        msg = EmailMessage()
        msg["From"] = config.site.sender
        msg["To"] = r.email
        msg["Subject"] = context["subject"]
        msg["Date"] = format_datetime(edition.created_at)
        msg["Message-ID"] = f"<{make_message_id(config, edition.digest, edition.period, r.email)}>"
        msg["List-Id"] = f"<daily.{config.site.list_id}>"
        msg["List-Unsubscribe"] = f"<{links['unsubscribe_url']}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(text_t.render(context))
        msg.add_alternative(inliner.inline(html_t.render(context)), subtype="html")
        total += len(msg.as_bytes(policy=SMTP))
    return total


def prepared(config: Config, edition: EditionView, people: list[Recipient]) -> int:
    """newsbroadcast's way, the one-time preparation included in the time."""
    env = make_environment(ROOT / "templates")
    ready = prepare_edition(env, config, config.digests[0], edition)
    total = 0
    for r in people:
        mid = make_message_id(config, edition.digest, edition.period, r.email)
        total += len(ready.message(r, mid, edition.created_at))
    return total


def timed(fn, *args) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    size = fn(*args)
    return time.perf_counter() - start, size


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    config, edition = site()
    naive(config, edition, recipients(5))  # warm up both: imports, template compilation
    prepared(config, edition, recipients(5))
    naive_n = max(n // 20, 50)  # the naive way is slow; its rate is steady after a few dozen
    slow, slow_bytes = timed(naive, config, edition, recipients(naive_n))
    fast, fast_bytes = timed(prepared, config, edition, recipients(n))
    slow_rate, fast_rate = naive_n / slow, n / fast
    print(f"naive (Jinja2 + CSS inlining + EmailMessage per recipient): {slow_rate:9,.0f} msg/s")
    print(f"  {naive_n} messages, {slow_bytes / naive_n:,.0f} bytes each")
    print(f"newsbroadcast (render once, substitute per recipient):     {fast_rate:9,.0f} msg/s")
    print(f"  {n} messages, {fast_bytes / n:,.0f} bytes each")
    ratio = fast_rate / slow_rate
    print(f"ratio: {ratio:.1f}x (goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'NOT met'})")


if __name__ == "__main__":
    main()
