"""The Agent's eyes: its credentials in words and across the helper's pipe, its pod's address."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfcheck.host.eyes import Credentials, discovery_proc, local_address

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


def test_credentials_cross_the_helpers_command_line_as_ids_only() -> None:
    creds = Credentials(100, 101, frozenset({999, 5}))
    assert Credentials.from_json(creds.to_json()) == creds
    for bad in ({}, {"uid": 1, "gid": True, "groups": []}, {"uid": 1, "gid": 2, "groups": [-1]}):
        with pytest.raises(ValueError, match="non-negative integer ids"):
            Credentials.from_json(bad)
