"""providers/ceph_lite.py's narrowing, against a stand-in for the CLI's two functions (the lab
test compares it with the real CLI on a running cluster)."""

import json
import sys
import types

from providers import ceph_lite

SIGS = {
    "cmd0": {"sig": ["osd", "pool", "create", {"name": "pool", "type": "CephPoolname"}]},
    "cmd1": {"sig": ["osd", "pool", "ls", {"name": "detail", "type": "CephChoices"}]},
    "cmd2": {"sig": ["osd", {"name": "who", "type": "CephString"}, "down"]},
    "cmd3": {"sig": ["health"]},
}


def stand_in(tried: list):
    """A CLI whose parse keeps the tags and whose validate matches the first signature
    that has every word it was given, saying on stderr what it tried."""

    def parse_json_funcsigs(text, _consumer):
        return json.loads(text)

    def validate_command(sigdict, args, _verbose=False):
        tried.append(sorted(sigdict))
        for tag, cmd in sigdict.items():
            words = [p for p in cmd["sig"] if isinstance(p, str)]
            if words == args[: len(words)]:
                return {"prefix": " ".join(words)}
        print(f"no valid command found; {len(sigdict)} closest matches", file=sys.stderr)
        return {}

    return types.SimpleNamespace(
        parse_json_funcsigs=parse_json_funcsigs, validate_command=validate_command
    )


def test_a_signature_fits_when_its_leading_words_are_the_commands():
    assert ceph_lite.fits(SIGS["cmd0"]["sig"], ["osd", "pool", "create", "x"])
    assert not ceph_lite.fits(SIGS["cmd1"]["sig"], ["osd", "pool", "create", "x"])
    assert ceph_lite.fits(SIGS["cmd2"]["sig"], ["osd", "pool", "create", "x"])  # an argument
    assert not ceph_lite.fits(SIGS["cmd3"]["sig"], ["osd", "pool", "create", "x"])


def test_a_command_is_tried_against_its_own_family_only(capsys):
    tried = []
    cli = stand_in(tried)
    ceph_lite.narrow(cli, ["osd", "pool", "create", "x"])
    sigdict = cli.parse_json_funcsigs(json.dumps(SIGS), "cli")
    assert cli.validate_command(sigdict, ["osd", "pool", "create", "x"]) == {
        "prefix": "osd pool create"
    }
    assert tried == [["cmd0", "cmd2"]] and capsys.readouterr().err == ""


def test_a_wrong_command_gets_the_hints_of_every_signature(capsys):
    tried = []
    cli = stand_in(tried)
    ceph_lite.narrow(cli, ["osd", "pool", "frobnicate"])
    sigdict = cli.parse_json_funcsigs(json.dumps(SIGS), "cli")
    assert cli.validate_command(sigdict, ["osd", "pool", "frobnicate"]) == {}
    assert tried == [["cmd2"], ["cmd0", "cmd1", "cmd2", "cmd3"]]
    assert capsys.readouterr().err == "no valid command found; 4 closest matches\n"
