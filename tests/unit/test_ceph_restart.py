"""Which daemons a config change restarts, from the config alone (components/ceph_restart.py)."""

import pytest

from components import ceph_restart as cr

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def startup_only(monkeypatch):
    monkeypatch.setattr(cr, "STARTUP_ONLY", frozenset({"osd_op_num_shards", "ms_type"}))


OPTIONS = {
    "global": {"ms_type": "async+posix", "mon_allow_pool_delete": True},
    "osd": {"osd_op_num_shards": 4, "osd_max_backfills": 2},
    "mon": {"mon_data_avail_warn": 2},
}


def test_only_the_options_read_at_start_count():
    assert cr.startup_options(OPTIONS) == {
        "global": {"ms_type": "async+posix"},
        "osd": {"osd_op_num_shards": 4},
    }
    assert cr.startup_options({"mon": {"mon_data_avail_warn": 2}}) == {}


def test_they_go_to_ceph_conf_by_section():
    text = cr.conf_text(cr.startup_options(OPTIONS))
    assert "[global]\nms_type = async+posix\n[osd]\nosd_op_num_shards = 4\n" in text
    assert cr.conf_text({}) == ""
    assert 'ms_type = "a#b"' in cr.conf_text({"global": {"ms_type": "a#b"}})


def test_each_daemon_restarts_for_the_options_that_apply_to_it():
    osd_only = cr.startup_options({"osd": {"osd_op_num_shards": 4}})
    assert cr.restart_value(None, osd_only, "mon", "node1") is None
    assert cr.restart_value(None, osd_only, "osd", "node1").startswith("conf-")
    changed = cr.startup_options({"osd": {"osd_op_num_shards": 8}})
    assert cr.restart_value(None, changed, "osd", "n") != cr.restart_value(
        None, osd_only, "osd", "n"
    )
    one_mds = cr.startup_options({"mds.node2": {"ms_type": "async+posix"}})
    assert cr.restart_value(None, one_mds, "mds", "node1") is None
    assert cr.restart_value(None, one_mds, "mds", "node2")
    everyone = cr.startup_options({"global": {"ms_type": "async+posix"}})
    assert all(cr.restart_value(None, everyone, k, "n") for k in ("mon", "mgr", "osd", "mds"))


def test_the_operators_restart_value_comes_first_and_stays_one_word():
    value = cr.restart_value("2026-12-04", cr.startup_options(OPTIONS), "osd", "n")
    assert value.startswith("2026-12-04.conf-") and len(value) <= 64
    assert cr.restart_value("r1", {}, "mon", "n") == "r1"
    assert cr.restart_value(None, {}, "mon", "n") is None
    long = cr.restart_value("x" * 60, cr.startup_options(OPTIONS), "osd", "n")
    assert len(long) <= 64 and long != cr.restart_value("x" * 59, {}, "osd", "n")


def test_the_shipped_list_names_options_only():
    import re

    with open(cr.LIST) as f:
        names = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names)
