"""The one YAML loader: aliases are bounded, every problem is a file:line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsbroadcast.config.yamlfile import MAX_ALIAS_VALUES, load_yaml
from newsbroadcast.errors import ConfigError


def laughs(levels: int) -> str:
    """ "Billion laughs": each level is a list of nine aliases of the level before."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_yaml(path, env={})
    return [str(p) for p in caught.value.problems]


def test_an_alias_bomb_is_a_located_error(tmp_path: Path) -> None:
    # Five levels repeat 9**5 values: past the cap, yet small enough that a loader
    # without one still finishes (and then wrongly accepts the file).
    path = tmp_path / "bomb.yaml"
    path.write_text(laughs(5))
    assert MAX_ALIAS_VALUES < 9**5
    [problem] = problems_of(path)
    # l4 (line 5) is the first list whose aliases repeat more than the cap in all.
    assert problem.startswith(f"{path}:5: alias *l3 repeats more than {MAX_ALIAS_VALUES}")


def test_a_self_referring_alias_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("site:\n  name: x\nloop: &a\n  - [1, *a]\n")
    assert problems_of(path) == [f"{path}:4: alias *a refers to itself"]


def test_aliases_within_the_cap_are_expanded_with_the_line_of_each_use(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {poll_every: 15m, tags: [a, b]}\none: *b\nboth: [*b, *b]\n")
    located = load_yaml(path, env={})
    assert located.data["one"] == {"poll_every": "15m", "tags": ["a", "b"]}
    assert located.data["both"] == [located.data["one"]] * 2
    assert located.line_of(("both", 1)) == 3
    assert located.problems == []


def test_a_key_that_is_not_a_plain_value_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "key.yaml"
    path.write_text("site:\n  ? [a, b]\n  : 1\n  name: x\n")
    located = load_yaml(path, env={})
    assert located.data == {"site": {"name": "x"}}
    assert [str(p) for p in located.problems] == [f"{path}:2: a key must be a plain value"]


def test_nesting_too_deep_for_python_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problems_of(path) == [f"{path}: YAML nested too deeply"]


def test_an_unknown_tag_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "tag.yaml"
    path.write_text("site:\n  name: !!python/name:os.system x\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: YAML syntax error")
