import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_configure(config):
    for mark in ("unit", "engine", "lab"):
        config.addinivalue_line("markers", f"{mark}: {mark} tier")
