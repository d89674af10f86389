"""The SDK's runtime debug messages stay in the program; everything else it logs, and
every message of ours, still reaches the engine."""

import pytest
from pulumi import log

from components import sdk_log

pytestmark = pytest.mark.unit


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(log, "_log", lambda _e, severity, message, *_a: calls.append(message))
    monkeypatch.setattr(log, "get_engine", lambda: object())
    for module in sdk_log.RUNTIME:
        monkeypatch.setattr(module, "log", log)
    return calls


def test_the_runtime_debug_messages_stay_and_the_rest_is_sent(sent, monkeypatch):
    monkeypatch.delenv("CEPHKVM_SDK_DEBUG", raising=False)
    sdk_log.install()
    sdk_log.RUNTIME[0].log.debug("resource registration prepared")
    sdk_log.RUNTIME[0].log.warn("a warning of the SDK")
    log.debug("a debug message of ours")
    assert sent == ["a warning of the SDK", "a debug message of ours"]


def test_stock_keeps_the_sdks_debug_messages(sent, monkeypatch):
    monkeypatch.setenv("CEPHKVM_SDK_DEBUG", "stock")
    sdk_log.install()
    sdk_log.RUNTIME[0].log.debug("resource registration prepared")
    assert sent == ["resource registration prepared"]
