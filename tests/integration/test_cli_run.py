"""The service as a user runs it: the real command, the sample site, a SQLite file."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_runner import Ran, process_command, process_env, run_cli, run_process
from tests.conftest import ROOT

SECRET = "test-secret-0123456789"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the sample site (config, templates, examples) in a folder of its own."""
    for part in ("config", "templates", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def nb(site: Path, *args: str, check: bool = True, **env: str | None) -> Ran:
    """The command on the site, called in this process (tests/cli_runner.py)."""
    return run_cli(
        site / "config/newsbroadcast.yaml",
        *args,
        cwd=site,
        env={"NEWSBROADCAST_SECRET": SECRET, **env},
        check=check,
    )


def nb_process(site: Path, *args: str, check: bool = True) -> Ran:
    """The same as a real `python -m newsbroadcast` process."""
    return run_process(
        site / "config/newsbroadcast.yaml",
        *args,
        cwd=site,
        env={"NEWSBROADCAST_SECRET": SECRET},
        check=check,
    )


def outbox(site: Path) -> list[Path]:
    return sorted((site / "var/outbox").glob("*.eml"))


def posts(site: Path) -> list[dict]:
    path = site / "var/posts/announcements.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_once_sends_the_sample_digest_and_posts_then_nothing_more(site: Path) -> None:
    # End to end, as a user runs it: each command a process of its own.
    nb_process(site, "subscribers", "import", "examples/subscribers.csv")
    first = nb_process(site, "run", "--once")
    assert "1 edition(s)" in first.stdout, first.stdout

    messages = outbox(site)
    assert len(messages) == 4  # one per sample subscriber
    recipients = set()
    for path in messages:
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients.add(msg["To"].addresses[0].addr_spec)
        assert msg.get_content_type() == "multipart/alternative"
        assert "Rwanda" in msg.get_body(("html",)).get_content()
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "amina.uwase@example.org" in recipients

    announced = posts(site)
    assert len(announced) == 3  # backfill: 3 in the sample config
    assert len({p["article_id"] for p in announced}) == 3

    second = nb_process(site, "run", "--once")
    assert "0 edition(s); sent 0" in second.stdout, second.stdout
    assert len(outbox(site)) == 4 and len(posts(site)) == 3

    # Forced, the weekly digest is due too: its first edition goes out; the daily one has
    # nothing new. Forced again: nothing new for either.
    forced = nb_process(site, "run", "--once", "--force")
    assert "1 edition(s); sent 4" in forced.stdout, forced.stdout
    forced_again = nb_process(site, "run", "--once", "--force")
    assert "0 edition(s); sent 0" in forced_again.stdout, forced_again.stdout

    status = nb_process(site, "status")
    assert "deliveries: sent 8" in status.stdout
    assert "posts: sent 3" in status.stdout
    assert "newsroom: last poll" in status.stdout


def test_run_stops_cleanly_on_sigint_after_sending(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    proc = subprocess.Popen(
        process_command(site / "config/newsbroadcast.yaml", "run"),
        cwd=site,
        env=process_env({"NEWSBROADCAST_SECRET": SECRET}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(outbox(site)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(outbox(site)) == 4
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err


def test_check_reports_file_and_line(site: Path) -> None:
    ok = nb(site, "check")
    assert ok.stdout.startswith(str(site / "config/newsbroadcast.yaml") + ": OK")

    path = site / "config/newsbroadcast.yaml"
    text = path.read_text()
    text = text.replace('cron: "0 7 * * *"', 'cron: "0 7 * *"')
    text = text.replace("timezone: Africa/Kigali", "timezone: Africa/Atlantis", 1)
    text = text.replace("    poll_every: 15m", "    poll_every: 15m\n    colour: red")
    path.write_text(text)
    bad = nb(site, "check", check=False)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    cfg = str(path)
    numbered = text.splitlines()

    def line_of(snippet: str) -> int:
        return next(i for i, line in enumerate(numbered, 1) if snippet in line)

    assert f"{cfg}:{line_of('colour: red')}: unknown key 'sources.0.colour'" in lines
    assert any(x.startswith(f"{cfg}:{line_of('0 7 * *')}: ") and "cron" in x for x in lines)
    assert any(x.startswith(f"{cfg}:{line_of('Africa/Atlantis')}: ") for x in lines)


def test_check_reports_missing_secret_and_bad_yaml(site: Path) -> None:
    result = nb(site, "check", check=False, NEWSBROADCAST_SECRET=None)
    assert result.returncode == 2
    secret_line = next(
        i
        for i, line in enumerate((site / "config/newsbroadcast.yaml").read_text().splitlines(), 1)
        if "NEWSBROADCAST_SECRET" in line and not line.lstrip().startswith("#")
    )
    assert (
        f"config/newsbroadcast.yaml:{secret_line}: environment variable "
        "NEWSBROADCAST_SECRET is not set"
    ) in result.stderr

    (site / "config/broken.yaml").write_text("site:\n  name: [unclosed\n")
    broken = nb(site, "--config", str(site / "config/broken.yaml"), "check", check=False)
    assert broken.returncode == 2
    assert "broken.yaml:3: YAML syntax error" in broken.stderr


def test_subscriber_import_reports_bad_rows_by_line_and_never_duplicates(site: Path) -> None:
    csv = site / "people.csv"
    csv.write_text(
        "email,name\n"
        "ada@example.org,Ada\n"
        "not-an-address,Bad\n"
        "ADA@EXAMPLE.ORG,Ada again\n"
        "\n"
        "grace@example.org,Grace\n"
    )
    result = nb(site, "subscribers", "import", str(csv), check=False)
    assert result.returncode == 1
    assert f"{csv}:3: 'not-an-address' is not a valid email address" in result.stderr
    assert "imported 2, already there 1, bad rows 1" in result.stdout
    again = nb(site, "subscribers", "import", str(csv), check=False)
    assert "imported 0, already there 3" in again.stdout
    listed = nb(site, "subscribers", "list").stdout.splitlines()
    assert len(listed) == 2
    added = nb(site, "subscribers", "add", "Grace@Example.org")
    assert "already there" in added.stdout


LONG_TITLE = (
    "Rwanda sends an all-woman peacekeeping unit to South Sudan, the first of its kind from "
    "the country, after two years of training with partners from the region and beyond, "
    "with officers drawn from the national police, the defence force and the prisons"
)


def test_run_once_exits_1_naming_what_failed_and_does_all_the_rest(site: Path) -> None:
    path = site / "config/newsbroadcast.yaml"
    original = path.read_text()
    sabotage = {
        # A source that cannot be read …
        "    poll_every: 15m\n": "    poll_every: 15m\n"
        "  - name: gone\n    type: feed\n    url: examples/missing.xml\n",
        # … a digest whose subject fails for any edition …
        "    catch_up: 6h\n": "    catch_up: 6h\n"
        '  - name: broken\n    cron: "0 7 * * *"\n    timezone: Africa/Kigali\n'
        '    subject: "{{ edition.articles[0].title.nope }}"\n    catch_up: 1d\n',
        # … and a channel whose template is not there.
        "    backfill: 3\n": "    backfill: 3\n    max_length: 200\n"
        "  - name: broken-channel\n    type: file\n    dir: var/posts\n"
        "    template: missing.txt.j2\n    backfill: 3\n",
    }
    text = original
    for anchor, replacement in sabotage.items():
        assert anchor in text
        text = text.replace(anchor, replacement, 1)
    path.write_text(text)
    # The newest story's title alone is longer than the channel's 200.
    feed = site / "examples/feed.xml"
    feed.write_text(
        feed.read_text().replace(
            "<item>",
            f"<item><title>{LONG_TITLE}</title><link>https://newsroom.example.org/long</link>"
            "<pubDate>Sat, 24 May 2025 10:00:00 +0000</pubDate></item>\n    <item>",
            1,
        )
    )
    nb(site, "subscribers", "import", "examples/subscribers.csv")

    first = nb(site, "run", "--once", check=False)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "1 edition(s); sent 7," in first.stdout  # the daily digest and 3 posts went out
    assert first.stdout.rstrip().endswith(
        "; failed: source gone, channel broken-channel, digest broken"
    ), first.stdout
    assert "Traceback" not in first.stderr
    assert "source gone: source 'gone': " in first.stderr
    assert "channel broken-channel: social/missing.txt.j2" in first.stderr
    assert "digest broken: " in first.stderr and "the subject template fails" in first.stderr
    assert len(outbox(site)) == 4
    announced = posts(site)
    assert len(announced) == 3
    shortened = next(p for p in announced if p["url"] == "https://newsroom.example.org/long")
    assert len(shortened["text"]) <= 200
    title = shortened["text"].split("\n\n")[0]
    assert title.endswith("…") and LONG_TITLE.startswith(title[:-1])

    status = nb(site, "status").stdout
    assert "gone: last poll" in status and "ERROR source 'gone'" in status
    assert "channel broken-channel: failing since " in status, status
    assert "digest broken: failing since " in status

    # Fixed, the next pass goes well, and says so.
    path.write_text(original.replace("    backfill: 3\n", "    backfill: 3\n    max_length: 200\n"))
    fixed = nb(site, "run", "--once", check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "failed:" not in fixed.stdout
    assert "failures: none" in nb(site, "status").stdout
