"""The service as a user runs it: the real command, the sample site, a SQLite file."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SECRET = "test-secret-0123456789"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the sample site (config, templates, examples) in a folder of its own."""
    for part in ("config", "templates", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part)
    return tmp_path


def nb(site: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NEWSBROADCAST_SECRET": SECRET, **env}
    full_env.pop("DATABASE_URL", None)
    full_env.pop("NEWSBROADCAST_CONFIG", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsbroadcast",
            "--config",
            str(site / "config/newsbroadcast.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=site,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def outbox(site: Path) -> list[Path]:
    return sorted((site / "var/outbox").glob("*.eml"))


def posts(site: Path) -> list[dict]:
    path = site / "var/posts/announcements.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_run_once_sends_the_sample_digest_and_posts_then_nothing_more(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    first = nb(site, "run", "--once")
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

    second = nb(site, "run", "--once")
    assert "0 edition(s); sent 0" in second.stdout, second.stdout
    assert len(outbox(site)) == 4 and len(posts(site)) == 3

    # Forced, the weekly digest is due too: its first edition goes out; the daily one has
    # nothing new. Forced again: nothing new for either.
    forced = nb(site, "run", "--once", "--force")
    assert "1 edition(s); sent 4" in forced.stdout, forced.stdout
    forced_again = nb(site, "run", "--once", "--force")
    assert "0 edition(s); sent 0" in forced_again.stdout, forced_again.stdout

    status = nb(site, "status")
    assert "deliveries: sent 8" in status.stdout
    assert "posts: sent 3" in status.stdout
    assert "newsroom: last poll" in status.stdout


def test_run_stops_cleanly_on_sigint_after_sending(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    env = {**os.environ, "NEWSBROADCAST_SECRET": SECRET}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsbroadcast",
            "--config",
            str(site / "config/newsbroadcast.yaml"),
            "run",
        ],
        cwd=site,
        env=env,
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
    env = {k: v for k, v in os.environ.items() if k != "NEWSBROADCAST_SECRET"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsbroadcast",
            "--config",
            str(site / "config/newsbroadcast.yaml"),
            "check",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        timeout=60,
    )
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
