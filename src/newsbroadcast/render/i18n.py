"""Languages: gettext catalogs for the templates, read with Babel, one active per render.

Catalogs live with the templates they translate, as plain ``.po`` files:
``templates/locale/<language>/LC_MESSAGES/messages.po``. They are compiled in memory
by Babel when the template environment is made, so a fresh clone (or a site made with
``newsbroadcast init``) needs no build step and never runs on a stale ``.mo``.

A template marks text with ``{% trans %}…{% endtrans %}`` (``{% pluralize %}`` for plural
forms) or ``_()``. Which catalog answers is chosen per render with ``language(env, code)``;
a language without a catalog, or a message missing from one, falls back to the English
written in the template itself.

The web pages speak the reader's language: ``offered_languages`` says which a site offers,
``negotiate`` picks one of them from a browser's Accept-Language, and ``display_name`` is
how each language calls itself in the language menu.
"""

from __future__ import annotations

import io
import re
from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import jinja2
from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from newsbroadcast.errors import Problem

__all__ = [
    "DEFAULT_LANGUAGE",
    "catalog_problems",
    "current_language",
    "display_name",
    "install",
    "language",
    "load_catalogs",
    "negotiate",
    "offered_languages",
    "resolve_language",
]

DEFAULT_LANGUAGE = "en"
LOCALE_DIR = "locale"
_NULL = NullTranslations()
_active: ContextVar[tuple[str, NullTranslations]] = ContextVar(
    "newsbroadcast_language", default=(DEFAULT_LANGUAGE, _NULL)
)


def catalog_files(templates_dir: Path) -> dict[str, Path]:
    """``{language: path of its messages.po}`` under ``templates_dir/locale``."""
    base = templates_dir / LOCALE_DIR
    return {po.parent.parent.name: po for po in sorted(base.glob("*/LC_MESSAGES/messages.po"))}


def load_catalogs(templates_dir: Path) -> dict[str, NullTranslations]:
    """Every catalog, compiled. Raises ValueError (with the file) for one Babel can't read."""
    catalogs: dict[str, NullTranslations] = {}
    for code, po in catalog_files(templates_dir).items():
        catalogs[code] = _compile(code, po)
    return catalogs


def catalog_problems(templates_dir: Path) -> list[Problem]:
    """A problem per catalog that cannot be read, located at its line when Babel says."""
    problems = []
    for code, po in catalog_files(templates_dir).items():
        try:
            _compile(code, po)
        except Exception as e:  # Babel raises several kinds; each is the admin's to fix
            line = getattr(e, "lineno", None)
            problems.append(Problem(str(po), line, f"translation catalog unreadable: {e}"))
    return problems


def _compile(code: str, po: Path) -> NullTranslations:
    with po.open("rb") as f:
        catalog = read_po(f, locale=code, abort_invalid=True)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def resolve_language(available: Container[str], wanted: str | None) -> str:
    """The catalog to use for ``wanted``: itself, else its base language (``fr-CA`` → ``fr``),
    else English."""
    if not wanted:
        return DEFAULT_LANGUAGE
    code = wanted.strip().replace("-", "_")
    for candidate in (code, code.split("_", 1)[0], code.lower(), code.split("_", 1)[0].lower()):
        if candidate in available:
            return candidate
    return DEFAULT_LANGUAGE


def install(env: jinja2.Environment, templates_dir: Path) -> None:
    """Add the i18n extension to ``env``, answering from the language set by ``language``.
    A broken catalog is left out here (``check`` reports it), so rendering still works."""
    env.add_extension("jinja2.ext.i18n")
    catalogs: dict[str, NullTranslations] = {}
    for code, po in catalog_files(templates_dir).items():
        try:
            catalogs[code] = _compile(code, po)
        except Exception:  # reported by catalog_problems; English meanwhile
            continue
    env.extend(newsbroadcast_catalogs=catalogs)

    def gettext(message: str) -> str:
        return _active.get()[1].gettext(message)

    def ngettext(singular: str, plural: str, n: int) -> str:
        return _active.get()[1].ngettext(singular, plural, n)

    # Added to the Environment at run time by the i18n extension: Jinja's types cannot say so.
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]


def languages(env: jinja2.Environment) -> dict[str, NullTranslations]:
    return getattr(env, "newsbroadcast_catalogs", {})


@contextmanager
def language(env: jinja2.Environment, wanted: str | None) -> Iterator[str]:
    """Render in ``wanted`` (resolved: see resolve_language) inside the block; yields the
    language actually used."""
    catalogs = languages(env)
    code = resolve_language(catalogs, wanted)
    token = _active.set((code, catalogs.get(code, _NULL)))
    try:
        yield code
    finally:
        _active.reset(token)


def current_language() -> str:
    return _active.get()[0]


def offered_languages(
    configured: Sequence[str], site_language: str, templates_dir: Path
) -> list[str]:
    """The languages a site's pages and sign-up form offer: ``configured`` (``web.languages``)
    when set; else the site's language first, then English (the templates' own) and every
    language with a catalog."""
    if configured:
        return list(dict.fromkeys(configured))
    others = sorted({DEFAULT_LANGUAGE, *catalog_files(templates_dir)})
    return list(dict.fromkeys([site_language, *others]))


# One entry of an Accept-Language header (RFC 9110 §12.5.4): a range and an optional weight.
_RANGE = re.compile(
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$"
)


def negotiate(accept_language: str | None, offered: Sequence[str]) -> str | None:
    """The one of ``offered`` the reader prefers by ``accept_language`` (q-values honoured,
    ``fr-CA`` matching ``fr``, ``q=0`` refusing, ``*`` taking the first offered); None when
    nothing matches. Malformed entries are skipped, as browsers expect."""
    if not accept_language or not offered:
        return None
    by_key = {code.lower().replace("_", "-"): code for code in offered}
    ranked: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for position, part in enumerate(accept_language.split(",")[:50]):  # bounded: any header
        m = _RANGE.match(part)
        if m is None:
            continue
        try:
            weight = float(m.group(2)) if m.group(2) is not None else 1.0
        except ValueError:
            continue
        if weight == 0:
            refused.add(m.group(1).lower())
        elif 0 < weight <= 1:
            ranked.append((-weight, position, m.group(1).lower()))
    for _weight, _position, wanted in sorted(ranked):
        if wanted == "*":
            rest = [code for key, code in by_key.items() if key not in refused]
            if rest:
                return rest[0]
            continue
        # The range itself, then its language alone ("fr-ca" -> "fr").
        for candidate in (wanted, wanted.split("-", 1)[0]):
            if candidate in by_key and candidate not in refused:
                return by_key[candidate]
    return None


def display_name(code: str) -> str:
    """How the language calls itself ("English", "Français", "Ikinyarwanda"), from Babel's
    CLDR data; the code itself for a language Babel does not know."""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name(code.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return code
    # CLDR writes French and others in lower case mid-sentence; a menu item starts a line.
    return name[:1].upper() + name[1:] if name else code
