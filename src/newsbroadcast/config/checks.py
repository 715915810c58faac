"""Checks beyond the schema: what would otherwise fail only when a digest is due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jinja2

from newsbroadcast.config.model import Config, Digest, HtmlSource
from newsbroadcast.errors import ConfigError, NewsBroadcastError, Problem
from newsbroadcast.render.templates import make_environment


def template_problems(config: Config) -> list[Problem]:
    """Each missing template or Jinja2 syntax error, with the template's file:line."""
    root = config.path(config.templates)
    env = make_environment(root)
    wanted: list[tuple[str, str]] = []
    for d in config.digests:
        wanted += [
            (f"email/{d.template}.html.j2", f"digest {d.name}"),
            (f"email/{d.template}.txt.j2", f"digest {d.name}"),
        ]
        try:
            env.from_string(d.subject)
        except jinja2.TemplateSyntaxError as e:
            wanted_file = str(config.config_file or "config")
            return [Problem(wanted_file, None, f"digest {d.name}: subject template: {e.message}")]
    wanted += [(f"social/{c.template}", f"channel {c.name}") for c in config.social]
    problems = []
    for name, user in dict(wanted).items():
        path = root / name
        try:
            env.get_template(name)
        except jinja2.TemplateNotFound:
            problems.append(Problem(str(path), None, f"template not found (used by {user})"))
        except jinja2.TemplateSyntaxError as e:
            problems.append(Problem(str(Path(e.filename or path)), e.lineno, e.message or str(e)))
    from newsbroadcast.render.i18n import catalog_problems

    return problems + catalog_problems(root)


def source_problems(config: Config) -> list[Problem]:
    """Each html source's selector that is not valid CSS, at its line in the config file
    (a poll would otherwise find it only when it runs)."""
    from newsbroadcast.config.yamlfile import load_yaml
    from newsbroadcast.sources.html import selector_problems

    found = [
        (index, source.name, key, why)
        for index, source in enumerate(config.sources)
        if isinstance(source, HtmlSource)
        for key, why in selector_problems(source)
    ]
    if not found:
        return []
    file = config.config_file
    located = load_yaml(file) if file is not None else None
    problems = []
    for index, name, key, why in found:
        loc: tuple[str | int, ...] = ("sources", index, *key.split("."))
        line = located.line_of(loc) if located is not None else None
        problems.append(Problem(str(file or "config"), line, f"source {name}: {key}: {why}"))
    return problems


# The development default of the Makefile: fine for `make run`, never for real subscribers.
DEV_SECRET = "dev-only-secret-change-me"


def warnings(config: Config) -> list[str]:
    """What works but will hurt once real mail goes out; `check` prints these and still
    passes (a demo on localhost is a valid configuration)."""
    found: list[str] = []
    if config.email.transport == "smtp":
        if not config.site.public_url.startswith("https://"):
            found.append(
                f"site.public_url is {config.site.public_url}: mail providers honour "
                "one-click unsubscribe (List-Unsubscribe-Post, RFC 8058) only for https links"
            )
        if config.email.dkim is None:
            found.append(
                "email.dkim is not set: large mailbox providers require bulk mail to be "
                "DKIM-signed for the From domain (fine if your SMTP relay signs for you)"
            )
    if DEV_SECRET in config.site.secrets:
        found.append(
            "site.secret is the development default: anyone could forge unsubscribe and "
            "preference links; set NEWSBROADCAST_SECRET to a long random value"
        )
    return found


def next_send_times(digest: Digest, now: datetime, count: int = 3) -> list[datetime]:
    """The digest's next ``count`` send times after ``now``, in its own time zone."""
    trigger = digest.trigger()
    times: list[datetime] = []
    previous = None
    moment = now
    while len(times) < count:
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        times.append(fire)
        previous, moment = fire, fire + timedelta(microseconds=1)
    return times


def schedule_lines(config: Config, now: datetime) -> list[str]:
    """One line per digest: its cron, time zone and next three send times."""
    lines = []
    for d in config.digests:
        shown = ", ".join(t.strftime("%a %Y-%m-%d %H:%M %Z") for t in next_send_times(d, now))
        lines.append(f"digest {d.name}: {d.cron!r} in {d.timezone}: next {shown or 'never'}")
    return lines


@dataclass(frozen=True)
class ConnectResult:
    what: str
    ok: bool
    detail: str


def connect_checks(config: Config) -> list[ConnectResult]:
    """Try what only the network can tell: the SMTP handshake and login, and each social
    channel's credentials (channels that offer a ``check()``). Sends and posts nothing."""
    results: list[ConnectResult] = []
    if config.email.transport == "smtp" and config.email.smtp is not None:
        from newsbroadcast.transports.smtp import SmtpTransport

        try:
            results.append(ConnectResult("smtp", True, SmtpTransport(config.email.smtp).check()))
        except NewsBroadcastError as e:
            results.append(ConnectResult("smtp", False, str(e)))
    from newsbroadcast.channels import make_channel

    for entry in config.social:
        what = f"channel {entry.name} ({entry.type})"
        try:
            channel = make_channel(entry, config)
            check = getattr(channel, "check", None)
            if check is None:
                results.append(ConnectResult(what, True, "no credential check for this type"))
                continue
            detail = check()
            results.append(ConnectResult(what, True, str(detail or "credentials accepted")))
        except (NewsBroadcastError, ValueError, OSError) as e:
            results.append(ConnectResult(what, False, str(e)))
    return results


def trial_problems(config: Config, env: jinja2.Environment | None = None) -> list[Problem]:
    """Render each digest once per language with a sample story, as a send would: finds
    what only rendering shows (an undefined name, a bad filter, a broken translation)."""
    from newsbroadcast.render import i18n
    from newsbroadcast.render.email import prepare_edition
    from newsbroadcast.render.views import EditionView, Recipient, StoryView

    env = env or make_environment(config.path(config.templates))
    now = datetime.now(UTC)
    story = StoryView(
        title="Sample story",
        url=config.site.url,
        summary="<p>A sample summary.</p>",
        published_at=now,
        author="A. Writer",
        tags=("sample",),
    )
    problems: list[Problem] = []
    for d in config.digests:
        view = EditionView(0, d.name, "check", now, [story, story])
        for language in [i18n.DEFAULT_LANGUAGE, *sorted(i18n.languages(env))]:
            try:
                prepared = prepare_edition(env, config, d, view, language)
                prepared.message(Recipient(0, "reader@example.org", "Reader"), "check@x.org", now)
            except ConfigError as e:
                root = config.path(config.templates)
                problems += [
                    Problem(
                        str(root / p.file) if (root / p.file).is_file() else p.file,
                        p.line,
                        f"digest {d.name} ({language}): {p.message}",
                    )
                    for p in e.problems
                ]
            except jinja2.TemplateError as e:
                where = _template_file(config, e, d.template)
                problems.append(
                    Problem(where, getattr(e, "lineno", None), f"digest {d.name} ({language}): {e}")
                )
            except Exception as e:  # a filter or a translation that raises: the admin's to fix
                problems.append(
                    Problem(
                        str(config.path(config.templates) / f"email/{d.template}.html.j2"),
                        _render_line(e),
                        f"digest {d.name} ({language}): rendering fails: {e!r}",
                    )
                )
    return _unique(problems)


def _template_file(config: Config, e: Exception, template: str) -> str:
    name = getattr(e, "filename", None) or getattr(e, "name", None)
    return str(name or config.path(config.templates) / f"email/{template}.html.j2")


def _render_line(e: BaseException) -> int | None:
    # Jinja2 rewrites tracebacks so the template's frames carry its file and line.
    tb = e.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))
