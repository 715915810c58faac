"""The committed JSON Schema is the one the models generate, and the sample config fits it."""

from __future__ import annotations

import copy
import json

import jsonschema
import yaml

from newsbroadcast.config.jsonschema import SCHEMA_FILE, schema_text
from tests.conftest import ROOT

SAMPLE = ROOT / "config/newsbroadcast.yaml"
COMMITTED = ROOT / "config" / SCHEMA_FILE


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_generated_one() -> None:
    # Fails when config/model.py changed without `make schema` (config schema --out …).
    assert COMMITTED.read_text() == schema_text()


def test_sample_config_names_the_schema_on_its_first_line() -> None:
    first = SAMPLE.read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema=./{SCHEMA_FILE}"


def test_sample_config_as_written_validates() -> None:
    data = yaml.safe_load(SAMPLE.read_text())
    errors = [e.message for e in validator().iter_errors(data)]
    assert errors == []


def test_schema_flags_what_load_config_refuses() -> None:
    data = yaml.safe_load(SAMPLE.read_text())
    v = validator()
    for path, value in (
        (("site", "colour"), "red"),  # unknown key
        (("digests", 0, "max_items"), "many"),  # wrong type
        (("sources", 0, "poll_every"), "soon"),  # not a duration
        (("email", "transport"), "pigeon"),  # not one of the choices
    ):
        broken = copy.deepcopy(data)
        node = broken
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        assert list(v.iter_errors(broken)), path
    broken = copy.deepcopy(data)
    broken["social"][0]["type"] = "myspace"
    assert list(v.iter_errors(broken))
    # The admin's own spelling is accepted: `from`, durations, ${VAR} for a number.
    ok = copy.deepcopy(data)
    ok["sources"][0]["poll_every"] = 90
    ok["email"]["smtp"]["port"] = "${SMTP_PORT}"
    assert list(v.iter_errors(ok)) == []
    assert "from" in json.loads(COMMITTED.read_text())["$defs"]["Site"]["properties"]
