"""Every bad config of tests/bad_inputs.py is refused by the config schema, naming its key."""

import copy

import pytest
import yaml

from components.config import ConfigError, load
from tests.bad_inputs import BAD
from tests.unit.test_config import ROOT

pytestmark = pytest.mark.unit

with open(f"{ROOT}/stacks/Pulumi.example.yaml") as f:
    EXAMPLE = yaml.safe_load(f)["config"]


def test_the_table_is_the_size_the_issue_asks_for():
    assert len(BAD) >= 40 and len({row[0] for row in BAD}) == len(BAD)


@pytest.mark.parametrize("what, change, where", BAD, ids=[row[0] for row in BAD])
def test_bad_input_is_refused_naming_its_key(what, change, where):
    config = copy.deepcopy(EXAMPLE)
    change(config)
    raw = {k.split(":", 1)[1]: v for k, v in config.items()}
    with pytest.raises(ConfigError) as err:
        load(raw, ROOT)
    assert any(p.startswith(f"cephkvm:{where}") for p in err.value.problems), (
        what,
        err.value.problems,
    )
    assert all(p.startswith("cephkvm:") and ": " in p for p in err.value.problems)


def test_the_example_itself_is_valid():
    raw = {k.split(":", 1)[1]: v for k, v in EXAMPLE.items()}
    load(raw, ROOT)
