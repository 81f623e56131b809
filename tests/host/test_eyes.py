"""The Agent's eyes: its credentials in words, its pod's address, what a helper answer holds."""

from __future__ import annotations

import json
from pathlib import Path

from selfcheck.asagent import parse_answer
from selfcheck.host.eyes import Credentials, discovery_proc, local_address
from selfcheck.model import Reason, Status

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.0
           /24 link UNICAST
        |-- 10.244.1.17
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
"""


def test_the_pods_address_is_the_first_local_non_loopback_one() -> None:
    assert local_address(FIB_TRIE) == "10.244.1.17"
    assert local_address(FIB_TRIE.replace("10.244.1.17", "127.0.0.2")) is None
    assert local_address("garbage\n|--\n/32 host LOCAL\n") is None


def test_credentials_in_the_words_every_surface_uses() -> None:
    assert Credentials(100, 101, frozenset()).words() == "uid 100, gid 101, groups none"
    assert Credentials(0, 0, frozenset({999, 5})).words() == "uid 0, gid 0, groups 5,999"


def test_discovery_uses_the_host_procfs_only_when_it_is_one(tmp_path: Path) -> None:
    assert discovery_proc(tmp_path) == Path("/proc")
    assert discovery_proc(Path("/proc")) == Path("/proc")


def test_a_helper_answer_becomes_verdicts_and_garbage_a_refusal() -> None:
    body = {
        "verdicts": [
            {
                "check": "procfs",
                "status": "failed",
                "reason": "enoent",
                "message": "/host/proc: No such file or directory (ENOENT)",
                "remediation": "Mount it.",
                "details": {"path": "/host/proc"},
                "duration_seconds": 0.01,
                "figures": {"visible_processes": 3},
                "node_info": {"kernel": "6.1"},
            }
        ],
        "required": ["procfs"],
        "notes": [],
        "settings_from": "the Agent's own environment",
    }
    answer = parse_answer(json.dumps(body).encode(), 0, 100.0)
    verdict = answer.verdicts["procfs"]
    assert (verdict.outcome.status, verdict.outcome.reason) == (Status.FAILED, Reason.ENOENT)
    assert (verdict.required, verdict.view) == (True, "agent")
    assert (verdict.started_at, verdict.finished_at) == (100.0, 100.01)
    assert verdict.outcome.figures == {"visible_processes": 3.0}
    assert answer.required == frozenset({"procfs"}) and not answer.refused
    broken = parse_answer(b"Traceback (most recent call last): DD_API_KEY=secret", 1, 0.0)
    assert broken.refused == "the helper holding the Agent's credentials exited 1 without verdicts"
    assert "secret" not in repr(broken)
    unknown = parse_answer(json.dumps({**body, "verdicts": [{"status": "weird"}]}).encode(), 0, 0.0)
    assert unknown.refused
