"""The service check datagram, held byte for byte to the official client's.

The oracle is datadogpy's ``DogStatsd.service_check`` (DataDog/datadogpy
``datadog/dogstatsd/base.py``), sending over a real unix datagram socket that this test reads:
for the same name, status, tags and message (after selfcheck's documented ``safe_message``),
selfcheck's datagram must be the bytes the client wrote.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from datadog.dogstatsd.base import DogStatsd

from selfcheck.model import Outcome, Reason, Result, Snapshot, Status
from selfcheck.servicechecks import (
    ELLIPSIS,
    MESSAGE_CAP,
    ServiceCheckStatus,
    datagram,
    datagrams,
    escape,
    safe_message,
    status_of,
    tags_of,
)

TEN_KB = ("selfcheck found /host/proc unreadable (EACCES); " * 220)[:10240]
MESSAGES = {
    "plain": "/var/run/datadog/dsd.socket: sent a 31-byte counter; mode 0722",
    "empty": "",
    "pipe": "the Agent reads a|b as two fields|#and this as tags",
    "newlines": "first line\nsecond line\r\nthird\n",
    "m_colon": "item:1 m:2 form: at the end m:",
    "non_ascii": "Prüfung fehlgeschlagen: /host/proc — 読めません 🚫",
    "controls": "tab\there, bell\x07, NUL\x00, escape\x1b[0m",
    "ten_kb": TEN_KB,
    "ten_kb_newlines": "a\n" * 5000,
    "ten_kb_non_ascii": "é" * 10000,
}
TAGS = (
    ("check:procfs", "reason:ok", "required:true", "view:agent"),
    ("check:pod_logs", "reason:not_enabled", "required:false", "view:own"),
    (),
)


@pytest.fixture
def oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DogStatsd, socket.socket]]:
    """datadogpy over a unix socket this test reads, no tags of its own from the environment."""
    for name in list(os.environ):
        if name.startswith(("DD_", "DATADOG_")):
            monkeypatch.delenv(name)
    path = tmp_path / "dsd.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(5)
        client = DogStatsd(
            socket_path=str(path),
            disable_telemetry=True,
            origin_detection_enabled=False,
            disable_background_sender=True,
        )
        try:
            yield client, receiver
        finally:
            client.close_socket()


def official(
    oracle: tuple[DogStatsd, socket.socket],
    name: str,
    status: int,
    tags: tuple[str, ...],
    message: str,
) -> bytes:
    client, receiver = oracle
    client.service_check(name, status, tags=list(tags) or None, message=message or None)
    return receiver.recv(65536)


@pytest.mark.parametrize("status", list(ServiceCheckStatus))
@pytest.mark.parametrize("tags", TAGS, ids=["required", "optional", "untagged"])
@pytest.mark.parametrize("key", list(MESSAGES))
def test_the_datagram_is_the_official_clients(
    oracle: tuple[DogStatsd, socket.socket],
    status: ServiceCheckStatus,
    tags: tuple[str, ...],
    key: str,
) -> None:
    message = MESSAGES[key]
    mine = datagram("selfcheck.procfs", int(status), tags, message)
    assert mine == official(oracle, "selfcheck.procfs", int(status), tags, safe_message(message))


@pytest.mark.parametrize("key", list(MESSAGES))
def test_the_message_cannot_add_fields_or_packets(key: str) -> None:
    """The Agent splits fields on ``|`` and a packet into messages on newlines."""
    sent = datagram("selfcheck.procfs", 2, TAGS[0], MESSAGES[key])
    assert sent.endswith(b"\n")
    head, _, body = sent.removesuffix(b"\n").partition(b"|m:")
    assert head == b"_sc|selfcheck.procfs|2|#check:procfs,reason:ok,required:true,view:agent"
    assert b"|" not in body and b"\n" not in body and b"\r" not in body
    assert len(body) <= MESSAGE_CAP


def test_a_long_message_is_cut_at_the_cap_with_an_ellipsis() -> None:
    capped = safe_message(TEN_KB)
    assert capped.endswith(ELLIPSIS)
    assert TEN_KB.startswith(capped.removesuffix(ELLIPSIS))
    assert MESSAGE_CAP - 3 <= len(escape(capped).encode()) <= MESSAGE_CAP


def test_the_cap_counts_escaped_bytes_and_never_splits_a_character() -> None:
    for text in ("é" * 3000, "\n" * 3000, "m:" * 3000, "🚫" * 3000):
        capped = safe_message(text)
        assert len(escape(capped).encode()) <= MESSAGE_CAP
        assert capped.removesuffix(ELLIPSIS) == text[: len(capped) - len(ELLIPSIS)]


@pytest.mark.parametrize("unit", ["a", "\u00e9", "\n", "\x85", "\U0001f6ab"])
def test_a_message_exactly_at_the_cap_is_whole_and_one_more_character_cuts_it(unit: str) -> None:
    """The edge between the whole-message path and the cut: escaped size equal to the cap."""
    text = unit * (MESSAGE_CAP // len(escape(unit.replace("\x85", " ")).encode()))
    assert len(escape(safe_message(text)).encode()) == MESSAGE_CAP
    assert safe_message(text) == text.replace("\x85", " ")
    longer = safe_message(text + "a")
    assert longer.endswith(ELLIPSIS)
    assert len(escape(longer).encode()) <= MESSAGE_CAP


def test_a_short_message_is_kept_as_it_is() -> None:
    assert safe_message(MESSAGES["plain"]) == MESSAGES["plain"]
    assert safe_message("a|b\tc") == "a\N{BROKEN BAR}b c"


def _result(status: Status, required: bool, reason: Reason = Reason.OK) -> Result:
    return Result("procfs", Outcome(status, reason, "a message"), required, 0.01, 1.0, 1.01)


@pytest.mark.parametrize(
    ("status", "required", "expected"),
    [
        (Status.OK, True, ServiceCheckStatus.OK),
        (Status.OK, False, ServiceCheckStatus.OK),
        (Status.SKIPPED, True, ServiceCheckStatus.OK),
        (Status.SKIPPED, False, ServiceCheckStatus.OK),
        (Status.DEGRADED, True, ServiceCheckStatus.WARNING),
        (Status.DEGRADED, False, ServiceCheckStatus.WARNING),
        (Status.FAILED, False, ServiceCheckStatus.WARNING),
        (Status.ERROR, False, ServiceCheckStatus.WARNING),
        (Status.FAILED, True, ServiceCheckStatus.CRITICAL),
        (Status.ERROR, True, ServiceCheckStatus.CRITICAL),
    ],
)
def test_status_mapping(status: Status, required: bool, expected: ServiceCheckStatus) -> None:
    assert status_of(_result(status, required)) is expected


def test_a_check_that_has_not_run_is_unknown_without_reason_or_view() -> None:
    assert status_of(None) is ServiceCheckStatus.UNKNOWN
    assert tags_of("procfs", None, True) == ("check:procfs", "required:true")


def test_tags_come_from_closed_sets() -> None:
    result = _result(Status.FAILED, True, Reason.EACCES)
    assert tags_of("procfs", result, True) == (
        "check:procfs",
        "reason:eacces",
        "required:true",
        "view:own",
    )


def test_one_datagram_per_check_of_a_snapshot_in_report_order() -> None:
    ran = _result(Status.FAILED, True, Reason.EACCES)
    snapshot = Snapshot(
        generation=1,
        check_ids=("procfs", "cgroups"),
        required=frozenset({"procfs", "cgroups"}),
        results=MappingProxyType({"procfs": ran}),
        counters=MappingProxyType({}),
        completed_at=2.0,
        created_at=1.0,
    )
    assert list(datagrams(snapshot, "node.selfcheck")) == [
        (
            "procfs",
            b"_sc|node.selfcheck.procfs|2|#check:procfs,reason:eacces,required:true,view:own"
            b"|m:a message\n",
        ),
        (
            "cgroups",
            b"_sc|node.selfcheck.cgroups|3|#check:cgroups,required:true"
            b"|m:cgroups has not run yet\n",
        ),
    ]
