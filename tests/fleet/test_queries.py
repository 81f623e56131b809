"""``selfcheck.fleet.queries``: the PromQL, literally, so a renamed metric or label shows here."""

from __future__ import annotations

from selfcheck.fleet.queries import Queries, seconds

GOOD = 'reason=~"ok|disabled|not_enabled|not_applicable"'
BAD = 'reason!~"ok|disabled|not_enabled|not_applicable"'


def test_the_first_round_over_every_node() -> None:
    assert Queries().first() == {
        "counts": (
            "count by (check, reason) (group by (node, check, reason)"
            f" (selfcheck_check_reason{{{GOOD}}}))"
        ),
        "samples": f"count_over_time(selfcheck_check_reason{{{BAD}}}[6h])",
        "reporting": "count(group by (node) (selfcheck_ready{}))",
        "missing_nodes": (
            '(max by (node) (up{container="selfcheck"})'
            " or (group by (node) (last_over_time(selfcheck_ready{}[1h])) * 0 - 1))"
            " unless on (node) group by (node) (selfcheck_ready{})"
        ),
    }


def test_the_second_round_selects_only_the_checks_not_ok() -> None:
    among = 'check=~"procfs|passwd"'
    assert Queries().second(["procfs", "passwd"]) == {
        "failing": (
            f"(selfcheck_check_reason{{{among},{BAD}}}"
            f" * ignoring (reason) group_left () selfcheck_check_required{{{among}}})"
            f" + ignoring (reason) group_left () (2 * selfcheck_check_success{{{among}}})"
        ),
        "last_success": (
            f"selfcheck_check_last_success_timestamp_seconds{{{among}}}"
            f" and ignoring (reason) selfcheck_check_reason{{{among},{BAD}}}"
        ),
    }


def test_selector_check_and_node_label_reach_every_matcher() -> None:
    queries = Queries(node="instance", selector='cluster="prod",', check="procfs")
    assert queries.m("selfcheck_check_reason", 'reason="ok"') == (
        'selfcheck_check_reason{cluster="prod",check="procfs",reason="ok"}'
    )
    assert queries.m("selfcheck_ready", per_check=False) == 'selfcheck_ready{cluster="prod"}'
    assert queries.first()["reporting"] == (
        'count(group by (instance) (selfcheck_ready{cluster="prod"}))'
    )


def test_durations() -> None:
    assert (seconds("6h"), seconds("1h"), seconds("30s"), seconds("2d")) == (
        21600.0,
        3600.0,
        30.0,
        172800.0,
    )
