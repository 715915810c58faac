"""The admin's commands as a person runs them: check, config schema, init, preview, dry runs."""

from __future__ import annotations

import email
import email.policy
import json
import re
import sqlite3
from pathlib import Path

from newsbroadcast.dispatch.preview import without_per_send_headers
from tests.cli_runner import Ran, run_cli
from tests.integration.test_cli_run import SECRET, nb, outbox, posts
from tests.integration.test_cli_run import site as site  # noqa: F401  (the fixture)
from tests.smtp_sink import SmtpSink, free_port


def config_file(site: Path) -> Path:
    return site / "config/newsbroadcast.yaml"


def edit(site: Path, old: str, new: str, count: int = 1) -> None:
    path = config_file(site)
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, count))


def row_counts(db_file: Path) -> dict[str, int]:
    with sqlite3.connect(db_file) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if not r[0].startswith("sqlite_")
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def table_contents(db_file: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db_file) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(map(repr, conn.execute(f'SELECT * FROM "{n}"'))) for n in names}


# --- check ------------------------------------------------------------------------------


def test_check_prints_each_digests_next_three_send_times(site: Path) -> None:
    result = nb(site, "check")
    daily = next(x for x in result.stdout.splitlines() if x.startswith("digest daily:"))
    assert "Africa/Kigali" in daily
    assert len(re.findall(r"\d{4}-\d\d-\d\d 07:00 CAT", daily)) == 3
    weekly = next(x for x in result.stdout.splitlines() if x.startswith("digest weekly:"))
    assert len(re.findall(r"Mon \d{4}-\d\d-\d\d 08:00 CAT", weekly)) == 3


def test_check_warns_about_what_would_hurt_real_mail_but_still_passes(site: Path) -> None:
    quiet = nb(site, "check")  # the demo: file transport, a real secret
    assert "warning:" not in quiet.stdout

    smtp = {"NEWSBROADCAST_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "2525"}
    loud = nb(site, "check", NEWSBROADCAST_SECRET="dev-only-secret-change-me", **smtp)
    assert loud.returncode == 0
    warnings = [x for x in loud.stdout.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 3, loud.stdout
    assert "site.public_url is http://localhost:8000" in warnings[0]
    assert "only for https links" in warnings[0]
    assert "email.dkim is not set" in warnings[1]
    assert "site.secret is the development default" in warnings[2]


def test_config_and_verbose_may_come_before_or_after_the_command(site: Path) -> None:
    elsewhere = site / "elsewhere"  # no config/newsbroadcast.yaml here: only --config finds it
    elsewhere.mkdir()
    secret = {"NEWSBROADCAST_SECRET": SECRET}

    def newsbroadcast(*args: str) -> Ran:
        return run_cli(None, *args, cwd=elsewhere, env=secret, check=False)

    config = str(config_file(site))
    after = newsbroadcast("check", "--config", config)
    assert after.returncode == 0, after.stderr
    assert "digest daily:" in after.stdout
    nested = newsbroadcast("subscribers", "list", "--config", config, "-v")
    assert nested.returncode == 0, nested.stderr
    assert '"level": "DEBUG"' in nested.stderr
    # Given twice, the one after the command wins; given before only, it still counts.
    twice = newsbroadcast("--config", str(site / "missing.yaml"), "check", "--config", config)
    assert twice.returncode == 0, twice.stderr
    missing = newsbroadcast("--config", str(site / "missing.yaml"), "check")
    assert missing.returncode == 2
    assert "missing.yaml" in missing.stderr


def test_check_finds_unknown_channel_type(site: Path) -> None:
    edit(site, "    type: file\n    dir: var/posts", "    type: myspace\n    dir: var/posts")
    result = nb(site, "check", check=False)
    assert result.returncode == 2
    line = next(
        i
        for i, x in enumerate(config_file(site).read_text().splitlines(), 1)
        if "type: myspace" in x
    )
    assert f"newsbroadcast.yaml:{line}: " in result.stderr
    assert "unknown type 'myspace'" in result.stderr


def test_check_finds_template_syntax_and_render_errors_with_file_and_line(site: Path) -> None:
    html = site / "templates/email/digest.html.j2"
    lines = html.read_text().splitlines(keepends=True)
    lines[20] = "{% if broken %}\n"  # never closed
    html.write_text("".join(lines))
    result = nb(site, "check", check=False)
    assert result.returncode == 2
    assert re.search(rf"{re.escape(str(html))}:\d+: ", result.stderr), result.stderr

    # Valid syntax that fails only when rendered (a misspelt name): found by check too.
    html.write_text(
        "".join(lines[:20] + lines[21:]).replace("{{ site.name }}", "{{ sitename }}", 1)
    )
    result = nb(site, "check", check=False)
    assert result.returncode == 2
    line = next(i for i, x in enumerate(html.read_text().splitlines(), 1) if "sitename" in x)
    assert f"{html}:{line}: digest daily (en): 'sitename' is undefined" in result.stderr


def test_check_connect_logs_in_to_smtp_and_reports_a_wrong_password(site: Path) -> None:
    with SmtpSink(auth={"news": "right-password"}) as sink:
        env = {
            "NEWSBROADCAST_TRANSPORT": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "none",
            "SMTP_USERNAME": "news",
            "SMTP_PASSWORD": "right-password",
        }
        ok = nb(site, "check", "--connect", **env)
        assert f"smtp: OK: smtp: 127.0.0.1:{sink.port} answered" in ok.stdout
        assert "logged in as news" in ok.stdout
        assert "channel announcements (file): OK" in ok.stdout
        assert sink.messages == []  # nothing sent

        bad = nb(site, "check", "--connect", check=False, **{**env, "SMTP_PASSWORD": "wrong"})
        assert bad.returncode == 1
        assert "smtp: FAILED" in bad.stdout
        assert "wrong" not in bad.stdout.replace("wrong password", "")

    down = nb(site, "check", "--connect", check=False, **{**env, "SMTP_PORT": str(free_port())})
    assert down.returncode == 1 and "smtp: FAILED" in down.stdout


# --- config schema and init --------------------------------------------------------------


def test_config_schema_writes_the_committed_schema(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    nb(site, "config", "schema", "--out", str(out))
    assert out.read_text() == (site / "config/newsbroadcast.schema.json").read_text()
    printed = nb(site, "config", "schema").stdout
    assert json.loads(printed)["properties"]["site"]


def test_init_makes_a_site_that_passes_check_and_runs(tmp_path: Path) -> None:
    target = tmp_path / "new-site"
    made = run_cli(None, "init", str(target), cwd=tmp_path, check=False)
    assert made.returncode == 0, made.stderr
    secret = re.search(r"export NEWSBROADCAST_SECRET=(\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    for part in ("config/newsbroadcast.yaml", "config/newsbroadcast.schema.json",
                 "templates/email/digest.html.j2", "templates/locale/fr/LC_MESSAGES/messages.po",
                 "examples/feed.xml"):  # fmt: skip
        assert (target / part).is_file(), part
        assert not (target / part).is_symlink()
    checked = nb(target, "check", NEWSBROADCAST_SECRET=secret)
    assert ": OK:" in checked.stdout

    again = run_cli(None, "init", str(target), cwd=tmp_path, check=False)
    assert again.returncode == 2 and "not empty" in again.stderr


# --- dry run -----------------------------------------------------------------------------


def test_run_once_dry_run_renders_everything_and_changes_nothing(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    db_file = site / "var/newsbroadcast.db"
    before = table_contents(db_file)
    counts = row_counts(db_file)

    dry = nb(site, "run", "--once", "--dry-run")
    assert "1 edition(s); sent 7" in dry.stdout, dry.stdout  # 4 messages and 3 posts
    assert "dry run: 4 message(s) rendered and 3 post(s) made, none sent" in dry.stdout
    assert outbox(site) == [] and posts(site) == []
    assert row_counts(db_file) == counts
    assert table_contents(db_file) == before

    # The real run afterwards finds everything still to do.
    real = nb(site, "run", "--once")
    assert "1 edition(s); sent 7" in real.stdout
    assert len(outbox(site)) == 4 and len(posts(site)) == 3
    after_real = row_counts(db_file)
    assert after_real["deliveries"] == 4 and after_real["posts"] == 3

    again = nb(site, "run", "--once", "--force", "--dry-run")
    assert "dry run:" in again.stdout
    assert row_counts(db_file) == after_real and len(outbox(site)) == 4


# --- preview -----------------------------------------------------------------------------


def test_preview_writes_the_next_edition_for_a_subscriber_in_their_language(
    site: Path, tmp_path: Path
) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    nb(site, "run", "--once", "--dry-run")  # nothing stored: preview has no articles yet
    empty = nb(site, "preview", "daily", check=False)
    assert empty.returncode == 2 and "no new articles" in empty.stderr

    # Articles stored, no edition made: poll only, by a run with no digest due.
    edit(site, 'cron: "0 7 * * *"', 'cron: "0 7 1 1 *"')
    edit(site, "catch_up: 1d", "catch_up: 1m")
    edit(site, 'cron: "0 8 * * mon"', 'cron: "0 8 1 1 *"')
    nb(site, "run", "--once")
    assert outbox(site) == []
    db_file = site / "var/newsbroadcast.db"
    before = table_contents(db_file)

    out = tmp_path / "preview"
    result = nb(
        site, "preview", "daily", "--subscriber", "claudine.mukamana@example.org", "--out", str(out)
    )
    assert "in fr" in result.stderr
    msg = email.message_from_bytes((out / "message.eml").read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "claudine.mukamana@example.org"
    assert "Lire la suite" in (out / "body.html").read_text()
    assert "Bonjour Claudine Mukamana" in (out / "body.txt").read_text()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in (out / "headers.txt").read_text()
    assert table_contents(db_file) == before and outbox(site) == []

    unknown = nb(site, "preview", "daily", "--subscriber", "nobody@example.org", check=False)
    assert unknown.returncode == 2 and "no subscriber" in unknown.stderr


def test_preview_send_test_sends_one_copy_marked_test(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    edit(site, 'cron: "0 7 * * *"', 'cron: "0 7 1 1 *"')
    edit(site, "catch_up: 1d", "catch_up: 1m")
    edit(site, 'cron: "0 8 * * mon"', 'cron: "0 8 1 1 *"')
    nb(site, "run", "--once")
    with SmtpSink() as sink:
        env = {
            "NEWSBROADCAST_TRANSPORT": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "none",
        }
        nb(site, "preview", "daily", "--send-test", "editor@example.net", **env)
        assert len(sink.messages) == 1
        received = sink.messages[0]
    assert received.recipients == ("editor@example.net",)
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ")
    assert "sub-0" not in msg["Message-ID"] and msg["Message-ID"].startswith("<test-")
    assert without_per_send_headers(received.data) != received.data
