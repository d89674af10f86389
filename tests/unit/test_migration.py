"""MigrationKey and MigrationAccess: a key of its own for peer-to-peer live migration."""

import hashlib
import io
import json

import paramiko
import pytest

from providers.migration_access import KEY_PATH, PEERS_PATH, MigrationAccessProvider
from providers.migration_key import MigrationKeyProvider
from tests.unit.fakes import Crash, connection

pytestmark = pytest.mark.unit

CONN = connection("node1")
AUTHORIZED = "/root/.ssh/authorized_keys"
OPERATOR = "ssh-ed25519 AAAAoperator operator@laptop"


@pytest.fixture(scope="module")
def key():
    outs = MigrationKeyProvider().create({"comment": "cephkvm-migration@p-s"}).outs
    return outs


@pytest.fixture
def host(host):
    """A node whose root already lets the operator in."""
    host.dirs.add("/root/.ssh")
    host.files[AUTHORIZED] = OPERATOR + "\n"
    return host


def props(key, **extra):
    return {
        "node": "node1",
        "connection": CONN,
        "peers": ["192.0.2.1", "192.0.2.2"],
        "peer_nodes": [
            {"name": "node1", "address": "192.0.2.1", "host_key": "ssh-ed25519 AAAA1"},
            {"name": "node2", "address": "192.0.2.2", "host_key": "ssh-ed25519 AAAA2"},
        ],
        "public_key": key["public_key"],
        "private_key": key["private_key"],
        **extra,
    }


def test_the_key_is_a_real_ed25519_pair_with_its_comment(key):
    private = paramiko.Ed25519Key.from_private_key(io.StringIO(key["private_key"]))
    kind, body, comment = key["public_key"].split()
    assert (kind, body, comment) == ("ssh-ed25519", private.get_base64(), "cephkvm-migration@p-s")
    again = MigrationKeyProvider().create({"comment": "cephkvm-migration@p-s"}).outs
    assert again["public_key"] != key["public_key"], "every key is new"


def test_a_bad_comment_is_refused_at_check():
    failures = MigrationKeyProvider().check({}, {"comment": "two words"}).failures
    assert [f.property for f in failures] == ["comment"]


def test_create_adds_a_restricted_line_and_the_root_only_key(host, key):
    MigrationAccessProvider().create(props(key))
    lines = host.files[AUTHORIZED].splitlines()
    assert lines[0] == OPERATOR, "the operator's own keys stay"
    assert lines[1] == f'from="192.0.2.1,192.0.2.2",restrict {key["public_key"]}'
    assert host.files[KEY_PATH] == key["private_key"]
    assert host.modes[KEY_PATH] == ("600", "root:root")
    assert not [line for line in host.log.lines if "PRIVATE" in line], "key only through stdin"
    # the other KVM nodes, for a VM's read to look for it once moved by hand
    assert json.loads(host.files[PEERS_PATH]) == props(key)["peer_nodes"]
    assert host.modes[PEERS_PATH] == ("600", "root:root")


def test_the_peers_file_read_back_different_is_drift(host, key):
    outs = MigrationAccessProvider().create(props(key)).outs
    host.files[PEERS_PATH] = "[]\n"
    read = MigrationAccessProvider().read("node1", outs).outs
    assert read["peer_nodes"] == []
    MigrationAccessProvider().update("node1", read, props(key))
    assert json.loads(host.files[PEERS_PATH]) == props(key)["peer_nodes"]


def test_a_second_run_changes_nothing(host, key):
    MigrationAccessProvider().create(props(key))
    before = len(host.changes)
    MigrationAccessProvider().create(props(key))
    assert len(host.changes) == before


@pytest.mark.parametrize("step", [1, 2, 3])
def test_crash_at_step_n_then_rerun_converges(host, key, step):
    host.log.crash_at = step
    with pytest.raises(Crash):
        MigrationAccessProvider().create(props(key))
    MigrationAccessProvider().create(props(key))
    assert host.files[AUTHORIZED].count(key["public_key"]) == 1
    assert host.files[KEY_PATH] == key["private_key"]
    assert json.loads(host.files[PEERS_PATH]) == props(key)["peer_nodes"]


def test_refresh_shows_a_removed_line_and_a_changed_key_as_drift(host, key):
    p = props(key)
    MigrationAccessProvider().create(p)
    host.files[AUTHORIZED] = OPERATOR + "\n"
    host.files[KEY_PATH] = "tampered"
    seen = MigrationAccessProvider().read("node1", p).outs
    assert seen["public_key"] == "" and seen["private_key"] == ""
    assert MigrationAccessProvider().diff("node1", seen, p).changes


def test_a_new_key_replaces_the_old_line_and_delete_removes_both(host, key):
    old = props(key)
    MigrationAccessProvider().create(old)
    rotated = MigrationKeyProvider().create({"comment": "cephkvm-migration@p-s2"}).outs
    new = props(rotated)
    MigrationAccessProvider().update("node1", old, new)
    assert key["public_key"] not in host.files[AUTHORIZED]
    assert rotated["public_key"] in host.files[AUTHORIZED]
    assert (
        hashlib.sha256(host.files[KEY_PATH].encode()).hexdigest()
        == hashlib.sha256(rotated["private_key"].encode()).hexdigest()
    )
    MigrationAccessProvider().delete("node1", new)
    assert host.files[AUTHORIZED] == OPERATOR + "\n"
    assert KEY_PATH not in host.files
