"""Checks beyond the schema: what would otherwise fail only when a digest is due."""

from __future__ import annotations

from pathlib import Path

import jinja2

from newsbroadcast.config import Config
from newsbroadcast.errors import Problem
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
    return problems
