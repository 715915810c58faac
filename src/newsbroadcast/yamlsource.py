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


def load_yaml(path: Path, env: Mapping[str, str] | None = None) -> Located:
    """Parse ``path`` and expand ``${VAR}`` from ``env``. A file that cannot be read or
    parsed raises ConfigError; duplicate keys and unset variables are collected in
    ``problems`` so they are reported together with the validation errors."""
    env = os.environ if env is None else env
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([Problem(name, None, f"cannot read config: {e.strerror or e}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([Problem(name, None, f"not UTF-8 text: {e}")]) from e
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([Problem(name, line, f"YAML syntax error: {e.problem}")]) from e
    located = Located(data={}, file=name)
    if root is not None:
        located.data = _build(root, (), located, located.problems, env)
    return located


def _build(
    node: yaml.Node, path: Path_, out: Located, problems: list[Problem], env: Mapping[str, str]
) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(" ").construct_object(key_node)  # scalars only, safe
            if key == "<<":
                problems.append(
                    Problem(
                        out.file,
                        key_node.start_mark.line + 1,
                        "YAML merge keys (<<) are not supported",
                    )
                )
                continue
            if key in result:
                problems.append(
                    Problem(out.file, key_node.start_mark.line + 1, f"duplicate key {key!r}")
                )
                continue
            result[key] = _build(value_node, (*path, key), out, problems, env)
            out.lines[(*path, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), out, problems, env) for i, item in enumerate(node.value)]
    value = yaml.SafeLoader(" ").construct_object(node)
    if isinstance(value, str) and "${" in value:
        value = _expand(value, out.file, node.start_mark.line + 1, problems, env)
    return value


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
