"""Readers of the host: they return values or ``OSError`` and never judge.

Checks (``selfcheck.checks``) turn what these return into a status and a reason, so two
checks that read the same file share one reader and the tests can feed the judges fixed
input.
"""
