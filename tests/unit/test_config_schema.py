"""The JSON Schema and the README's config reference are made from the models, and kept
current; the stacks shipped with the project use only keys the schema knows."""

import json
import os

import pytest
import yaml

from components import config_schema
from tests.unit.test_config import ROOT

pytestmark = pytest.mark.unit


def test_the_shipped_json_schema_is_current():
    with open(os.path.join(ROOT, config_schema.SCHEMA_FILE)) as f:
        assert json.load(f) == config_schema.json_schema(), (
            "run: python -m components.config_schema > docs/config.schema.json"
        )


def test_the_readme_reference_is_current():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert config_schema.readme_with_reference(readme) == readme, (
        "run: python -m components.config_schema --readme"
    )


@pytest.mark.parametrize("stack", ["example", "lab"])
def test_shipped_stacks_use_known_keys(stack):
    with open(os.path.join(ROOT, "stacks", f"Pulumi.{stack}.yaml")) as f:
        config = yaml.safe_load(f)["config"]
    known = config_schema.json_schema()["properties"]["config"]["properties"]
    assert set(config) <= set(known)


def test_every_key_has_a_type_in_the_schema():
    schema = config_schema.json_schema()
    for name, model in schema["$defs"].items():
        for key, prop in model.get("properties", {}).items():
            assert {"type", "anyOf", "$ref", "enum"} & set(prop), (name, key, prop)
