"""YAML loading that remembers where every value came from, so errors can say file:line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsbroadcast.errors import ConfigError, Problem

# ${NAME} or ${NAME:-default}; "$${" escapes a literal "${".
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """Plain Python data plus the line each path in it was read from."""

    data: Any
    file: str
    lines: dict[Path_, int] = field(default_factory=dict)
    # Problems that do not stop reading (an unset variable, a duplicate key).
    problems: list[Problem] = field(default_factory=list)

    def in_file(self, loc: Path_) -> Path_:
        """The parts of ``loc`` that exist in the file.

        Pydantic puts union tags into error locations (``sources.0.feed.url``); parts that
        are not in the data are skipped instead of ending the walk.
        """
        node: Any = self.data
        path: Path_ = ()
        for part in loc:
            in_map = isinstance(node, Mapping) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if in_map or in_list:
                node, path = node[part], (*path, part)
        return path

    def line_of(self, loc: Path_) -> int | None:
        """The line of the deepest part of ``loc`` that exists in the file."""
        path = self.in_file(loc)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)


# Aliases may repeat at most this many values in all. A real config repeats a few dozen;
# "billion laughs" (nine aliases of nine aliases...) would otherwise expand to 10**9 values.
MAX_ALIAS_VALUES = 10_000


def load_yaml(path: Path, env: Mapping[str, str] | None = None) -> Located:
    """Parse ``path`` and expand ``${VAR}`` from ``env``. A file that cannot be read or
    parsed raises ConfigError, as do aliases that refer to themselves or repeat more than
    MAX_ALIAS_VALUES values; duplicate keys and unset variables are collected in
    ``problems`` so they are reported together with the validation errors."""
    env = os.environ if env is None else env
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(name, None, f"cannot read config: {e.strerror or e}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(name, None, f"not UTF-8 text: {e}")]) from e
    located = Located(data={}, file=name)
    try:
        root = yaml.compose(text, Loader=_Loader)
        if root is not None:
            located.data = _Builder(located, env).build(root, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(name, line, f"YAML syntax error: {e.problem}")]) from e
    except RecursionError as e:
        # Python's stack ends long before any config a person writes would.
        raise ConfigError([Problem(name, None, "YAML nested too deeply")]) from e
    return located


class _Alias(yaml.Node):
    """One use of an alias (``*name``), kept apart from the node it names so that each
    use has its own line and the builder can count what aliases repeat."""

    def __init__(self, target: yaml.Node, anchor: str, mark: yaml.Mark) -> None:
        super().__init__(target.tag, target, mark, mark)
        self.anchor = anchor


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = super().compose_node(parent, index)
            # An alias always resolves (the composer raises for an unknown anchor).
            return None if target is None else _Alias(target, event.anchor, event.start_mark)
        return super().compose_node(parent, index)


class _Builder:
    """Turns the composed nodes into plain data, noting lines and bounding aliases."""

    def __init__(self, out: Located, env: Mapping[str, str]) -> None:
        self.out = out
        self.env = env
        self.scalars = yaml.SafeLoader("")  # constructs scalars only, safe
        self.repeated = 0  # values built again because an alias named them
        self.aliases: list[_Alias] = []  # the aliases being expanded, outermost first

    def problem(self, node: yaml.Node, message: str) -> Problem:
        return Problem(self.out.file, node.start_mark.line + 1, message)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.out.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, _Alias):
            return self.expand(node, path)
        if self.aliases:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                outer = self.aliases[0]
                raise ConfigError(
                    [
                        self.problem(
                            outer,
                            f"alias *{outer.anchor} repeats more than {MAX_ALIAS_VALUES} "
                            "values in all: write them out, or use fewer aliases",
                        )
                    ]
                )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.scalars.construct_object(node)
        if isinstance(value, str) and "${" in value:
            value = _expand(
                value, self.out.file, node.start_mark.line + 1, self.out.problems, self.env
            )
        return value

    def expand(self, alias: _Alias, path: Path_) -> Any:
        # An alias inside the node it names (`&a [*a]`) meets itself on the way down.
        if any(a.value is alias.value for a in self.aliases):
            raise ConfigError([self.problem(alias, f"alias *{alias.anchor} refers to itself")])
        self.aliases.append(alias)
        try:
            return self.build(alias.value, path)
        finally:
            self.aliases.pop()

    def mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            target = key_node.value if isinstance(key_node, _Alias) else key_node
            if not isinstance(target, yaml.ScalarNode):
                self.out.problems.append(self.problem(key_node, "a key must be a plain value"))
                continue
            key = self.scalars.construct_object(target)
            if key == "<<":
                self.out.problems.append(
                    self.problem(key_node, "YAML merge keys (<<) are not supported")
                )
                continue
            if key in result:
                self.out.problems.append(self.problem(key_node, f"duplicate key {key!r}"))
                continue
            result[key] = self.build(value_node, (*path, key))
            self.out.lines[(*path, key)] = key_node.start_mark.line + 1
        return result


def _expand(
    value: str, file: str, line: int, problems: list[Problem], env: Mapping[str, str]
) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        var, default = m.group(1), m.group(2)
        if var in env and env[var] != "":
            return env[var]
        if default is not None:
            return default
        problems.append(
            Problem(
                file,
                line,
                f"environment variable {var} is not set (export it, or write ${{{var}:-default}})",
            )
        )
        return ""

    return _PLACEHOLDER.sub(replace, value)
