"""Languages: gettext catalogs for the templates, read with Babel, one active per render.

Catalogs live with the templates they translate, as plain ``.po`` files:
``templates/locale/<language>/LC_MESSAGES/messages.po``. They are compiled in memory
by Babel when the template environment is made, so a fresh clone (or a site made with
``newsbroadcast init``) needs no build step and never runs on a stale ``.mo``.

A template marks text with ``{% trans %}…{% endtrans %}`` (``{% pluralize %}`` for plural
forms) or ``_()``. Which catalog answers is chosen per render with ``language(env, code)``;
a language without a catalog, or a message missing from one, falls back to the English
written in the template itself.
"""

from __future__ import annotations

import io
from collections.abc import Container, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import jinja2
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

from newsbroadcast.errors import Problem

__all__ = [
    "DEFAULT_LANGUAGE",
    "catalog_problems",
    "current_language",
    "install",
    "language",
    "load_catalogs",
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
