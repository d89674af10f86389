"""base.Provider hands each engine call normalised values and its node: made when the call
first asks for it, once per call, never in check or diff, and apart for concurrent calls."""

import threading
from typing import Any

import pytest
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, UpdateResult

from providers import base
from providers.errors import Failure
from providers.schema.types import Spec, state, update

pytestmark = pytest.mark.unit


class Inputs(Spec):
    connection: dict[str, Any] = update()
    size: int = update(1)
    timeout: int = state(30)


class Probe(base.Provider):
    """Asks for its node as often as it is told to; says what it got."""

    INPUTS = Inputs

    def create(self, props):
        return CreateResult("id", {**props, "nodes": self._ask(props)})

    def read(self, id_, props):
        return ReadResult(id_, {**props, "nodes": self._ask(props)})

    def update(self, _id, _olds, news):
        return UpdateResult({**news, "nodes": self._ask(news)})

    def delete(self, _id, props):
        self._ask(props)

    def diff(self, _id, olds, news):
        self.seen = (olds, news)
        if news.get("ask"):
            return self.node
        return DiffResult(changes=False)

    def _ask(self, props):
        return [self.node.name for _ in range(props.get("ask", 0))]


@pytest.fixture
def made(monkeypatch):
    """The sessions base.session made, by the connection they were made for."""
    made = []

    class Node:
        def __init__(self, props):
            self.name = props["connection"]["name"]
            made.append(self.name)

    monkeypatch.setattr(base, "session", Node)
    return made


def props(name="n1", **more):
    return {"connection": {"name": name}, "size": 1, "timeout": 30, **more}


def test_a_call_makes_its_node_once_when_first_asked(made):
    assert Probe().create(props(ask=3)).outs["nodes"] == ["n1"] * 3
    assert made == ["n1"], "one session for the whole call"
    Probe().read("id", props(ask=2))
    Probe().delete("id", props(ask=1))
    assert made == ["n1"] * 3, "one per call"


def test_a_call_that_needs_no_host_makes_no_node(made):
    Probe().create(props(ask=0))
    Probe().read("id", props(ask=0))
    assert made == []


def test_an_update_reaches_the_new_node_and_a_state_change_none(made):
    outs = Probe().update("id", props("old"), props("new", size=2, ask=1)).outs
    assert outs["nodes"] == ["new"] and made == ["new"]
    outs = Probe().update("id", props("new"), props("new", timeout=60, ask=1)).outs
    assert outs["timeout"] == 60 and "nodes" not in outs and made == ["new"]


def test_values_are_normalised_before_the_provider_sees_them(made):
    outs = Probe().create({**props(), "size": 2.0, "__provider": "pickled"}).outs
    assert outs["size"] == 2 and isinstance(outs["size"], int) and "__provider" not in outs
    provider = Probe()
    provider.diff("id", {**props(), "size": 3.0}, props())
    assert provider.seen[0]["size"] == 3 and isinstance(provider.seen[0]["size"], int)


def test_check_and_diff_have_no_node(made):
    with pytest.raises(Failure, match="check and diff never open a connection"):
        Probe().diff("id", props(), props(ask=1))
    with pytest.raises(Failure):
        Probe().node
    assert made == []


def test_concurrent_calls_each_reach_their_own_node(made, monkeypatch):
    """One provider object serves the engine's calls from several threads at once."""
    provider, both, got = Probe(), threading.Barrier(2, timeout=10), {}
    session = base.session

    def meeting(props):  # both calls are under way when they make their nodes
        both.wait()
        return session(props)

    monkeypatch.setattr(base, "session", meeting)

    def call(name):
        got[name] = provider.create(props(name, ask=2)).outs["nodes"]

    threads = [threading.Thread(target=call, args=(n,)) for n in ("n1", "n2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {"n1": ["n1", "n1"], "n2": ["n2", "n2"]} and sorted(made) == ["n1", "n2"]


def test_string_booleans_reach_the_provider_as_booleans():
    """`pulumi config set` writes "false": a provider given it directly must not see a true
    string (issue 8)."""
    from providers.cloud_vm import CloudVMProvider
    from tests.unit.test_cloud_vm import PROPS

    inputs = CloudVMProvider().check({}, {**PROPS, "keep_disk": "false", "autostart": "true"})
    assert inputs.failures == []
    assert inputs.inputs["keep_disk"] is False and inputs.inputs["autostart"] is True


def test_a_field_added_since_the_state_was_written_is_no_change():
    """A state from before `snapshots` existed (issue 12) diffs as no change against the
    same VM now: the missing field counts at its default (the upgrade lab test's failure)."""
    from providers.cloud_vm import CloudVMProvider
    from tests.unit.test_cloud_vm import PROPS

    news = CloudVMProvider().check({}, dict(PROPS)).inputs
    old_state = {k: v for k, v in news.items() if k not in ("snapshots", "allow_rollback")}
    assert CloudVMProvider().diff("vm", old_state, news).changes is False


def test_a_wait_looks_again_soon_after_its_first_look_then_at_its_interval(monkeypatch):
    sleeps = []
    monkeypatch.setattr(base.time, "sleep", sleeps.append)
    answers = iter([False, False, False, "there"])
    assert base.wait_until(lambda: next(answers), timeout=60, interval=2, what="it") == "there"
    assert sleeps == [0.5, 2, 2]


def test_a_wait_with_something_left_lasts_while_it_keeps_falling(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(base.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(base.time, "sleep", lambda s: clock.update(now=clock["now"] + s))
    counts = iter([5, 4, 4, 4, 3] + [3] * 20)
    seen = {}

    def done():
        seen["left"] = next(counts)
        return False

    with pytest.raises(TimeoutError, match="after 10s without progress"):
        base.wait_until(done, timeout=10, interval=4, what="it", left=lambda: seen["left"])
    # lows at 0 s (5), 1 s (4) and 13 s (3): the timeout then runs out 10 s later
    assert 23 <= clock["now"] <= 27
