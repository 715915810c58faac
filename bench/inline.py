"""CSS inlining: premailer (the long-standing pure-Python choice) against css_inline (what
render/email.py uses), on the same rendered digest, measured in the same run.

    .venv/bin/python bench/inline.py [iterations]

Prints each library's time per document and the ratio premailer / css_inline (above 1 means
css_inline is faster). Both keep the @media rules in a <style> block and load nothing from
the network, as an email digest needs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import css_inline
import premailer

from newsbroadcast.config.model import Config
from newsbroadcast.render.email import template_context
from newsbroadcast.render.templates import make_environment
from newsbroadcast.render.views import EditionView, StoryView

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 12.0  # per library: the whole run stays well under 30 s on a slow machine


def rendered_digest() -> str:
    """The demo site's daily digest with ten stories, rendered but not yet inlined."""
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
                "<ul><li>First cohort</li><li>Second cohort</li></ul>"
            )
            * 2,
            published_at=now - timedelta(hours=n),
            image=f"https://newsroom.example.org/img/{n}.jpg",
            author="Newsroom staff",
        )
        for n in range(10)
    ]
    edition = EditionView(1, "daily", "2026-03-02", now, stories)
    env = make_environment(ROOT / "templates")
    digest = config.digests[0]
    context = template_context(env, config, digest, edition)
    context.update(
        subscriber={"name": "Jane", "email": "jane@example.org"},
        unsubscribe_url="https://news.example.org/unsubscribe/t",
        preferences_url="https://news.example.org/preferences/t",
    )
    return env.get_template(f"email/{digest.template}.html.j2").render(context)


def measure(inline: Callable[[str], str], html: str, iterations: int) -> tuple[float, int]:
    """Seconds per document over up to ``iterations`` runs (fewer if the budget runs out)."""
    inline(html)  # warm up: imports, caches, parsers built on first use
    start = time.perf_counter()
    done = 0
    while done < iterations:
        inline(html)
        done += 1
        if time.perf_counter() - start > BUDGET_SECONDS:
            break
    return (time.perf_counter() - start) / done, done


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    logging.getLogger("cssutils").setLevel(logging.CRITICAL)  # premailer's parser is chatty
    html = rendered_digest()
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    def with_premailer(doc: str) -> str:
        return premailer.Premailer(
            doc,
            allow_network=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()

    # Same input, same job: each output must keep the dark-mode rules and inline the rest.
    for name, out in (("premailer", with_premailer(html)), ("css_inline", inliner.inline(html))):
        if "prefers-color-scheme: dark" not in out or 'style="' not in out:
            raise SystemExit(f"{name} did not produce an inlined document with @media rules")

    slow, slow_n = measure(with_premailer, html, iterations)
    fast, fast_n = measure(inliner.inline, html, iterations)
    print(f"document: {len(html):,} characters, 10 stories")
    print(f"premailer : {slow * 1000:8.2f} ms per document ({slow_n} runs)")
    print(f"css_inline: {fast * 1000:8.2f} ms per document ({fast_n} runs)")
    print(f"ratio premailer / css_inline: {slow / fast:.1f}x")


if __name__ == "__main__":
    main()
