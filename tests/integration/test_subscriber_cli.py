"""The admin commands as a user runs them: the real `newsbroadcast` process on the sample site."""

from __future__ import annotations

import csv
import io
import json
import mailbox
import shutil
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from newsbroadcast.subscribers import tokens
from tests.cli_runner import Ran, process_command, process_env, run_cli
from tests.conftest import ROOT
from tests.smtp_sink import free_port

SECRET = "cli-secret-0123456789abcdef"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    for part in ("config", "templates", "examples"):
        shutil.copytree(ROOT / part, tmp_path / part)
    with (tmp_path / "config/newsbroadcast.yaml").open("a", encoding="utf-8") as f:
        f.write("\nmailbox:\n  maildir: var/mailbox\n")
    return tmp_path


def nb(site: Path, *args: str, check: bool = True) -> Ran:
    """The command on the site, called in this process (tests/cli_runner.py)."""
    config = site / "config/newsbroadcast.yaml"
    return run_cli(config, *args, cwd=site, env={"NEWSBROADCAST_SECRET": SECRET}, check=check)


def test_export_data_remove_suppress_and_erase(site: Path) -> None:
    nb(site, "subscribers", "import", "examples/subscribers.csv")
    nb(site, "run", "--once")  # deliveries to count

    exported = list(csv.DictReader(io.StringIO(nb(site, "subscribers", "export").stdout)))
    assert len(exported) == 4
    someone = exported[0]["email"]
    assert {"email", "name", "language", "status"} <= set(exported[0])

    data = json.loads(nb(site, "subscribers", "data", someone).stdout)
    assert data["email"] == someone
    assert data["deliveries"] and data["deliveries"][0]["status"] == "sent"

    erased = nb(site, "subscribers", "erase", someone)
    assert "erased; 1 deliveries kept as anonymous counts" in erased.stdout
    assert someone not in nb(site, "subscribers", "list").stdout
    missing = nb(site, "subscribers", "data", someone, check=False)
    assert missing.returncode == 2 and "no subscriber" in missing.stderr
    again = nb(site, "subscribers", "add", someone, check=False)
    assert again.returncode == 2 and "suppression list" in again.stderr

    other = exported[1]["email"]
    nb(site, "subscribers", "remove", other)
    assert f"{other}\tunsubscribed" in nb(site, "subscribers", "list").stdout
    third = exported[2]["email"]
    assert "suppressed" in nb(site, "subscribers", "suppress", third).stdout
    assert f"{third}\tunsubscribed" in nb(site, "subscribers", "list").stdout


def test_mailbox_process_honours_a_mailto_unsubscribe(site: Path) -> None:
    nb(site, "subscribers", "add", "reader@example.org")
    listed = nb(site, "subscribers", "list").stdout.split("\t")
    token = tokens.sign(SECRET, "unsubscribe", int(listed[0]))
    msg = EmailMessage()
    msg["From"] = "reader@example.org"
    msg["To"] = "unsubscribe@newsroom.example.org"
    msg["Subject"] = f"unsubscribe {token}"
    msg.set_content("")
    mailbox.Maildir(site / "var/mailbox", create=True).add(msg.as_bytes())
    result = nb(site, "mailbox", "process")
    assert "read 1: unsubscribed 1" in result.stdout
    assert "reader@example.org\tunsubscribed" in nb(site, "subscribers", "list").stdout


def test_serve_answers_on_the_given_port(site: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        process_command(site / "config/newsbroadcast.yaml", "serve", "--port", str(port)),
        env=process_env({"NEWSBROADCAST_SECRET": SECRET}),
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/subscribe")
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert page.status_code == 200 and "Women in Uniform" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_import_finds_the_delimiter_and_checks_languages(site: Path) -> None:
    people = site / "people.csv"
    people.write_text(
        "email;name;language\n"
        "ada@example.org;Lovelace, Ada;en\n"
        "marie@example.org;Curie, Marie;FR\n"
        "klingon@example.org;Worf;tlh\n"
    )
    result = nb(site, "subscribers", "import", str(people), check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{people}:4: language 'tlh' is not offered (web.languages: en, fr)"
    ]
    assert "imported 2, already there 0, bad rows 1" in result.stdout
    listed = [line.split("\t") for line in nb(site, "subscribers", "list").stdout.splitlines()]
    assert [(row[1], row[3], row[4]) for row in listed] == [
        ("ada@example.org", "Lovelace, Ada", "en"),
        ("marie@example.org", "Curie, Marie", "fr"),
    ]

    # Told the wrong delimiter, every row is refused, with a hint at the right one.
    forced = nb(site, "subscribers", "import", str(people), "--delimiter", ",", check=False)
    assert forced.returncode == 1
    assert "(fields separated by ';'? use --delimiter ';')" in forced.stderr.splitlines()[0]


def test_import_of_a_latin1_file_names_the_line_and_the_option(site: Path) -> None:
    people = site / "people.csv"
    people.write_bytes(
        "email,name\nzoe@example.org,Zoe\nlea@example.org,Léa Müller\n".encode("latin-1")
    )
    refused = nb(site, "subscribers", "import", str(people), check=False)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: {people}:3: not utf-8 text"), refused.stderr
    assert "--encoding latin-1" in refused.stderr and "Traceback" not in refused.stderr
    assert nb(site, "subscribers", "list").stdout == ""  # all or nothing: no row imported

    nb(site, "subscribers", "import", str(people), "--encoding", "latin-1")
    names = [line.split("\t")[3] for line in nb(site, "subscribers", "list").stdout.splitlines()]
    assert names == ["Zoe", "Léa Müller"]
