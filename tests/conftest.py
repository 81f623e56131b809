"""Shared fixtures; the daemon fixtures live in ``tests/support/daemons.py``."""

pytest_plugins = ["tests.support.daemons"]
