"""Arrows one way: who may import whom (DESIGN.md, "Layout" and "Who may import whom").

Parses every module's imports with ``ast`` (nothing is imported or run) and checks them
against the rules below. Imports inside functions count: they run too. Imports under
``if TYPE_CHECKING:`` do not: they never run, so they do no I/O and make no cycle.
The second half feeds the same checker small trees that break each rule, so a rule that
could never fail would show here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "newsbroadcast"
SOURCE = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# Libraries that talk to the world: the network, a database, processes, a server.
IO_LIBRARIES = (
    "sqlalchemy",
    "psycopg",
    "httpx",
    "httpcore",
    "smtplib",
    "imaplib",
    "poplib",
    "socket",
    "urllib.request",
    "http.client",
    "subprocess",
    "tweepy",
    "mastodon",
    "atproto",
    "uvicorn",
    "starlette",
    "apscheduler",
)

# render/ is pure: of our own modules it may use only these (the config it is handed, the
# error tree, itself, and the unsubscribe tokens, which are HMAC arithmetic).
RENDER_MAY_IMPORT = (
    f"{PACKAGE}.render",
    f"{PACKAGE}.config.model",
    f"{PACKAGE}.errors",
    f"{PACKAGE}.subscribers.tokens",
)

DISTRIBUTION = ("outbox", "dispatch", "transports", "channels", "subscribers", "web")

# importer package -> packages it must not import (all under PACKAGE)
FORBIDDEN = {
    "sources": ("articles", "planning", *DISTRIBUTION, "service", "cli"),
    "transports": ("db", "outbox", "dispatch", "planning", "service", "cli"),
    "channels": ("db", "outbox", "dispatch", "planning", "service", "cli"),
    "planning": ("dispatch", "transports", "channels", "service", "cli"),
    "articles": ("planning", *DISTRIBUTION, "service", "cli"),
    # View builders live in render/views.py: the web app needs nothing of the dispatcher.
    "web": ("dispatch",),
}

MAX_LOOSE_MODULES = 6

# Private names of libraries we use on purpose, each for a reason its module states.
LIBRARY_PRIVATES = {
    "argparse._SubParsersAction": "the type add_subparsers() returns has no public name",
    "etree._Element": "lxml's element type is only spelt this way",
    "transport._pool": "httpx offers no public way to give httpcore a network backend",
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (a submodule when ``from pkg import submodule``)
    names: tuple[str, ...]  # what ``from target import ...`` takes; () for ``import target``
    line: int

    def __str__(self) -> str:
        what = (
            f"from {self.target} import {', '.join(self.names)}"
            if self.names
            else (f"import {self.target}")
        )
        return f"{self.module}:{self.line}: {what}"


def modules(root: Path) -> dict[str, Path]:
    """Every module under ``root`` (the package's folder) by its dotted name."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_time_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _run_time_nodes(other)
            continue
        yield child
        yield from _run_time_nodes(child)


def imports(root: Path) -> list[Import]:
    """The run-time imports of every module under ``root``."""
    known = modules(root)
    found = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _run_time_nodes(tree):
            if isinstance(node, ast.Import):
                found += [Import(name, alias.name, (), node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importer's package upwards
                    package = name.split(".")
                    if not is_package:
                        package.pop()
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                names = tuple(alias.name for alias in node.names)
                submodules = [n for n in names if f"{base}.{n}" in known]
                found += [Import(name, f"{base}.{n}", (), node.lineno) for n in submodules]
                rest = tuple(n for n in names if n not in submodules)
                if rest:
                    found.append(Import(name, base, rest, node.lineno))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layering_violations(root: Path) -> list[str]:
    """Imports that point the wrong way."""
    bad = []
    for imp in imports(root):
        where = imp.module.split(".")
        area = where[1] if len(where) > 1 else ""
        if area == "render":
            ours = _within(imp.target, PACKAGE)
            if ours and not any(_within(imp.target, ok) for ok in RENDER_MAY_IMPORT):
                bad.append(f"{imp} (render/ is pure)")
            if any(_within(imp.target, lib) for lib in IO_LIBRARIES):
                bad.append(f"{imp} (render/ does no I/O)")
        for package in FORBIDDEN.get(area, ()):
            if _within(imp.target, f"{PACKAGE}.{package}"):
                bad.append(f"{imp} ({area}/ must not import {package})")
        if _within(imp.target, f"{PACKAGE}.cli") and area not in ("cli", "__main__"):
            bad.append(f"{imp} (only the command line imports cli/)")
        # The composition root sits on top: the command line, the scheduler that triggers
        # its steps and the public surface use it; whatever it wires is handed it.
        if _within(imp.target, f"{PACKAGE}.service") and area not in ("cli", "runtime", ""):
            bad.append(f"{imp} (only cli/, runtime/ and the package import the service)")
    return bad


def private_name_violations(root: Path) -> list[str]:
    """``from x import _name`` of another module's private name."""
    return [
        f"{imp} (private to {imp.target})"
        for imp in imports(root)
        if imp.target != imp.module
        and _within(imp.target, PACKAGE)
        and any(n.startswith("_") and not n.startswith("__") for n in imp.names)
    ]


def private_attribute_violations(root: Path) -> list[str]:
    """``something._name``: a private attribute reached through anything but ``self`` or
    ``cls`` (say ``self.dispatcher._prepared``, or ``module._helper``)."""
    bad = []
    for name, path in modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if ast.unparse(node) in LIBRARY_PRIVATES:
                continue
            bad.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return bad


def cycles(root: Path, package: str) -> list[list[str]]:
    """Import cycles among the modules of ``package`` (a dotted name)."""
    graph: dict[str, set[str]] = {}
    for imp in imports(root):
        inside = _within(imp.module, package) and _within(imp.target, package)
        if inside and imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return found


def loose_modules(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("*.py"))


# -- the tree as it is ------------------------------------------------------------------------


def test_imports_point_one_way() -> None:
    assert layering_violations(SOURCE) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_name_violations(SOURCE) == []


def test_no_module_reaches_into_another_objects_private_attributes() -> None:
    assert private_attribute_violations(SOURCE) == []


def test_the_cli_package_has_no_import_cycles() -> None:
    assert modules(SOURCE).keys() >= {f"{PACKAGE}.cli", f"{PACKAGE}.cli.commands"}
    assert cycles(SOURCE, f"{PACKAGE}.cli") == []


def test_at_most_a_handful_of_loose_modules() -> None:
    assert len(loose_modules(SOURCE)) <= MAX_LOOSE_MODULES, loose_modules(SOURCE)


# -- the checker catches what it should ---------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents:
            (root / folder / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("module", "text"),
    [
        ("render/bad.py", "import sqlalchemy\n"),
        ("render/bad.py", "def f():\n    from httpx import Client\n"),
        ("render/bad.py", "from newsbroadcast.db.models import Article\n"),
        ("render/bad.py", "from newsbroadcast.transports import smtp\n"),
        ("render/bad.py", "from ..channels.base import Channel\n"),
        ("sources/bad.py", "from newsbroadcast.articles.store import upsert_articles\n"),
        ("sources/bad.py", "import newsbroadcast.outbox.claim\n"),
        ("transports/bad.py", "from newsbroadcast.db import models\n"),
        ("channels/bad.py", "from newsbroadcast.dispatch.dispatcher import Dispatcher\n"),
        ("planning/bad.py", "from newsbroadcast.channels import make_channel\n"),
        ("web/bad.py", "from newsbroadcast.cli.common import site_config\n"),
        ("dispatch/bad.py", "from newsbroadcast.service import Service\n"),
        ("web/bad.py", "from newsbroadcast.dispatch.preview import preview_digest\n"),
    ],
)
def test_a_wrong_way_import_is_found(tmp_path: Path, module: str, text: str) -> None:
    root = _tree(tmp_path, {module: text})
    assert len(layering_violations(root)) == 1


def test_what_is_allowed_is_not_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "render/ok.py": "from typing import TYPE_CHECKING\nimport jinja2\n"
            "from newsbroadcast.render.views import StoryView\n"
            "from . import views\n"
            "if TYPE_CHECKING:\n    from newsbroadcast.db.models import Article\n",
            "render/views.py": "",
            "planning/ok.py": "from newsbroadcast.render.social import render_post\n",
            "cli/ok.py": "from newsbroadcast.dispatch.worker import run_worker\n",
        },
    )
    assert layering_violations(root) == []


def test_a_private_name_from_another_module_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "articles/push.py": "from newsbroadcast.articles.ingest import _state, source_state\n",
            "articles/ingest.py": "_state = 1\nsource_state = 2\n",
        },
    )
    assert private_name_violations(root) == [
        "newsbroadcast.articles.push:1: from newsbroadcast.articles.ingest import _state, "
        "source_state (private to newsbroadcast.articles.ingest)"
    ]


def test_a_private_attribute_of_another_object_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "service.py": "class S:\n    def f(self):\n        self._own = 1\n"
            "        self.dispatcher._prepared.clear()\n"
        },
    )
    assert private_attribute_violations(root) == [
        "newsbroadcast.service:4: self.dispatcher._prepared"
    ]


def test_an_import_cycle_in_the_cli_is_found(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "cli/commands.py": "from newsbroadcast.cli import admin\n",
            "cli/admin.py": "def f():\n    from newsbroadcast.cli.commands import main\n",
        },
    )
    assert cycles(root, f"{PACKAGE}.cli") == [
        ["newsbroadcast.cli.admin", "newsbroadcast.cli.commands", "newsbroadcast.cli.admin"]
    ]


def test_too_many_loose_modules_are_counted(tmp_path: Path) -> None:
    root = _tree(tmp_path, {f"m{i}.py": "" for i in range(MAX_LOOSE_MODULES)})
    assert len(loose_modules(root)) == MAX_LOOSE_MODULES + 1  # and __init__.py
