"""The configuration's JSON Schema, generated from the pydantic models in config/model.py.

Editors (the YAML language server, IntelliJ) read it through the sample file's first line
``# yaml-language-server: $schema=./newsbroadcast.schema.json`` and then complete keys and
flag mistakes while the admin types. The committed copy is checked against a freshly
generated one by the tests, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from newsbroadcast.config.model import Config

SCHEMA_FILE = "newsbroadcast.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A value may be written as ${VAR} or ${VAR:-default} wherever the file takes a scalar:
# the schema describes the file as written, before the environment is read.
PLACEHOLDER = {
    "type": "string",
    "pattern": r"^.*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*$",
    "description": "read from the environment: ${VAR} or ${VAR:-default}",
}
_SCALARS = {"string", "integer", "number", "boolean"}
_STRING_RULES = ("pattern", "format", "minLength", "maxLength")
# Set by load_config, never written by an admin.
_INTERNAL = ("config_file",)


def config_schema() -> dict[str, Any]:
    """The schema of ``newsbroadcast.yaml`` with the keys as written (``from``, ``schema``)."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    for name in _INTERNAL:
        schema.get("properties", {}).pop(name, None)
    schema = _allow_placeholders(schema)
    return {
        "$schema": DIALECT,
        "title": "newsbroadcast configuration",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def schema_text() -> str:
    """The schema as committed: sorted keys would reorder properties, so they are not."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(schema_text(), encoding="utf-8")
    return target


def _allow_placeholders(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_placeholders(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {k: _allow_placeholders(v) for k, v in node.items()}
    # Discriminators (``type: feed``) stay literal: a placeholder there would match every
    # branch of the union and make the file ambiguous.
    if "const" in node:
        return node
    kind = node.get("type")
    # A plain string already takes "${VAR}"; a constrained one or a number does not.
    constrained = kind == "string" and any(k in node for k in _STRING_RULES)
    if not isinstance(kind, str | None):
        return node  # a "properties" mapping with a key named "type", not a schema
    if kind in _SCALARS - {"string"} or constrained or "enum" in node:
        described = {k: node.pop(k) for k in ("title", "description", "default") if k in node}
        return {**described, "anyOf": [node, PLACEHOLDER]}
    return node
