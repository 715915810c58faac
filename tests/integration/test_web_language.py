"""The subscriber pages in the reader's language, forms that keep what was typed, and
truthful answers to a repeated sign-up and to an old confirmation link (issue #15), over
real HTTP against the app on a real port, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from newsbroadcast.db.models import Subscriber, TransactionalEmail
from newsbroadcast.subscribers import tokens
from tests.integration.test_web_endpoints import active_subscriber, csrf_of, sign_up, status_of
from tests.web_site import SECRET, RunningSite, confirm_link, running_site

THREE = {"languages": ["en", "fr", "rw"]}


def lang_of(page: httpx.Response) -> str:
    m = re.search(r'<html lang="([^"]+)"', page.text)
    assert m, "the page has no <html lang>"
    return m.group(1)


def menu(page: httpx.Response) -> list[tuple[str, str]]:
    """The language select's (value, label) pairs."""
    return re.findall(r'<option value="([^"]+)" lang="[^"]+"[^>]*>([^<]+)</option>', page.text)


def queued(site: RunningSite) -> int:
    with site.sessions() as session:
        return session.scalar(select(func.count()).select_from(TransactionalEmail)) or 0


def test_pages_follow_accept_language_then_the_subscribers_choice(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url, web=THREE) as site:
        client = httpx.Client(base_url=site.url)

        def page(accept: str) -> httpx.Response:
            return client.get("/subscribe", headers={"accept-language": accept})

        french = page("de-DE, rw;q=0.5, fr-CA;q=0.8, en;q=0.1")  # q-values, then regions
        assert lang_of(french) == "fr" and "Recevez le résumé de Women in Uniform" in french.text
        assert french.headers["content-language"] == "fr"
        assert "accept-language" in french.headers["vary"].lower()
        # Each language by its own name, the reader's one chosen.
        assert menu(french) == [("en", "English"), ("fr", "Français"), ("rw", "Ikinyarwanda")]
        assert '<option value="fr" lang="fr" selected>' in french.text
        assert lang_of(page("rw")) == "rw" and "Iyandikishe" in page("rw").text
        assert lang_of(page("fr;q=0, *;q=0.5")) == "en"  # refused, then anything: the first
        assert lang_of(page("de")) == "en"  # nothing offered matches: the site's first

        # Signing up in Kinyarwanda from an English browser: the answer and the email follow
        # the choice, and so do the subscriber's own pages, whatever the browser says.
        client.headers["accept-language"] = "en"
        answer = sign_up(client, "ada@example.org", language="rw")
        assert lang_of(answer) == "rw" and "Reba muri imeri zawe" in answer.text
        (message,) = site.wait_for_mail("ada@example.org")
        assert message["Subject"] == "Emeza iyandikwa ryawe kuri Women in Uniform"
        assert message["Content-Language"] == "rw"
        html = message.get_body(("html",))
        assert html is not None and '<html lang="rw"' in html.get_content()
        text = message.get_body(("plain",))
        assert text is not None and "fungura iyi link mu masaha 48" in text.get_content()
        link = confirm_link(message)
        confirm_page = client.get(link)
        assert lang_of(confirm_page) == "rw" and "Yego, nyoherereza incamake" in confirm_page.text
        done = client.post(link, data={"csrf": csrf_of(confirm_page)})
        preferences = client.get(done.headers["location"])
        assert lang_of(preferences) == "rw" and "iyandikwa ryawe ryemejwe" in preferences.text

        # Changing the language there changes the page at once.
        saved = client.post(
            done.headers["location"], data={"csrf": csrf_of(preferences), "language": "fr"}
        )
        assert lang_of(saved) == "fr" and "Enregistré." in saved.text
        unsubscribe = re.search(r'id="unsubscribe" href="([^"]+)"', saved.text)
        assert unsubscribe
        assert lang_of(client.get(unsubscribe.group(1))) == "fr"


def test_languages_default_to_the_site_and_those_with_catalogs(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url, web={"languages": []}) as site:
        form = httpx.get(site.url + "/subscribe", headers={"accept-language": "fr"})
        assert menu(form) == [("en", "English"), ("fr", "Français"), ("rw", "Ikinyarwanda")]
        assert lang_of(form) == "fr"


def test_signup_errors_sit_by_their_field_and_keep_what_was_typed(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        client = httpx.Client(base_url=site.url, headers={"accept-language": "fr"})
        answer = sign_up(client, "ada.example.org", name="Ada L", language="fr", digests=["weekly"])
        assert answer.status_code == 400 and lang_of(answer) == "fr"
        field = re.search(r'<input type="email" id="email"[^>]*>', answer.text)
        assert field, "no address field"
        assert 'value="ada.example.org"' in field.group(0)
        assert 'aria-invalid="true"' in field.group(0)
        assert 'aria-describedby="email-error"' in field.group(0)
        # The error comes right after its field, not above the form.
        after = answer.text[field.end() :].lstrip()
        assert after.startswith('<p class="error" id="email-error">Cela ne ressemble pas')
        assert answer.text.index("<form") < answer.text.index('id="email-error"')
        assert 'value="Ada L"' in answer.text
        assert re.search(r'id="digest-weekly"[^>]* checked', answer.text)
        assert '<option value="fr" lang="fr" selected>' in answer.text
        assert "<title>Erreur" in answer.text  # a screen reader hears it first
        # The fields without an error are not marked.
        assert answer.text.count('aria-invalid="true"') == 1
        assert status_of(site, "ada.example.org") is None and queued(site) == 0


def test_a_signup_within_resend_after_says_when_the_last_link_went_out(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        client = httpx.Client(base_url=site.url)
        first = sign_up(client, "ada@example.org")
        assert "a confirmation link is on its way" in first.text and 'id="held"' not in first.text
        site.wait_for_mail("ada@example.org")

        site.clock.now += timedelta(minutes=3)
        again = sign_up(client, "ada@example.org")
        assert again.status_code == 200
        # Nothing is sent, and the page says so: when the last link went, when the next may.
        assert "on its way" not in again.text
        assert "sent to this address 3 minutes ago, at 5:30" in again.text
        assert re.search(r"Another can be sent from 5:40\W+AM \(UTC\), in 7 minutes", again.text)
        assert queued(site) == 1

        # In French, with French times.
        site.clock.now += timedelta(seconds=30)
        french = sign_up(client, "ada@example.org", language="fr")
        assert "il y a 3 minutes, à 05:30 (UTC)" in french.text
        assert "à partir de 05:40 (UTC), dans 7 minutes" in french.text

        # Once the window has passed, a new link goes out, said as before.
        site.clock.now += site.config.web.resend_after
        later = sign_up(client, "ada@example.org")
        assert "a confirmation link is on its way" in later.text
        site.wait_for_mail("ada@example.org", count=2)
        assert queued(site) == 2


def test_an_older_confirmation_link_is_replaced_by_the_newer_signup(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        client = httpx.Client(base_url=site.url)
        sign_up(client, "ada@example.org")
        (first,) = site.wait_for_mail("ada@example.org")
        old_link = confirm_link(first)
        page = client.get(old_link)
        assert client.post(old_link, data={"csrf": csrf_of(page)}).status_code == 303
        assert status_of(site, "ada@example.org") == "active"

        # She leaves, and later signs up anew: only the new email's link may confirm that.
        preferences = client.get(
            client.post(old_link, data={"csrf": csrf_of(page)}).headers["location"]
        )
        leave = re.search(r'id="unsubscribe" href="([^"]+)"', preferences.text)
        assert leave
        client.post(leave.group(1), data={"List-Unsubscribe": "One-Click"})
        assert status_of(site, "ada@example.org") == "unsubscribed"
        site.clock.now += site.config.web.resend_after
        sign_up(client, "ada@example.org")
        assert status_of(site, "ada@example.org") == "pending"
        _, second = site.wait_for_mail("ada@example.org", count=2)
        new_link = confirm_link(second)
        assert new_link != old_link

        page = client.get(old_link)  # the button still shows: a GET changes nothing
        refused = client.post(old_link, data={"csrf": csrf_of(page)})
        assert refused.status_code == 410
        assert "This link was replaced by a newer one" in refused.text
        assert status_of(site, "ada@example.org") == "pending"

        page = client.get(new_link)
        assert client.post(new_link, data={"csrf": csrf_of(page)}).status_code == 303
        assert status_of(site, "ada@example.org") == "active"


def test_a_preferences_error_sits_by_the_digests_and_keeps_the_other_choices(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url) as site:
        sid = active_subscriber(site, "p@example.org")
        token = tokens.sign(SECRET, "preferences", sid)
        client = httpx.Client(base_url=site.url)
        page = client.get(f"/preferences/{token}")
        answer = client.post(
            f"/preferences/{token}",
            data={"csrf": csrf_of(page), "digests": ["gone"], "name": "Pat", "paused": "on"},
        )
        assert answer.status_code == 400
        assert 'aria-describedby="digests-error"' in answer.text
        assert 'id="digests-error"' in answer.text and 'id="saved"' not in answer.text
        assert 'value="Pat"' in answer.text and re.search(r'id="paused"[^>]* checked', answer.text)
        with site.sessions() as session:
            assert session.get_one(Subscriber, sid).paused is False  # nothing stored


def test_error_pages_speak_the_readers_language_and_say_what_happened(
    tmp_path: Path, database_url: str
) -> None:
    with running_site(tmp_path, database_url, web=THREE) as site:
        client = httpx.Client(base_url=site.url, headers={"accept-language": "fr"})
        missing = client.get("/no-such-page")
        assert missing.status_code == 404 and lang_of(missing) == "fr"
        assert "Page introuvable" in missing.text
        assert "Il n’y a pas de page à cette adresse." in missing.text
        # A method the page does not take is not "not found", and says which it takes.
        wrong = client.delete("/subscribe")
        assert wrong.status_code == 405 and "Requête refusée" in wrong.text
        assert "POST" in wrong.headers["allow"] and "GET" in wrong.headers["allow"]
