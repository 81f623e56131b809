"""Each check's verdict as a DogStatsD service check: the datagram, built once per check.

Datadog's own integrations report up or down as service checks, which monitors of type
``service check`` alert on and which are not metric series. The datagram is the one the
official clients write (DataDog/datadogpy ``datadog/dogstatsd/base.py`` ``service_check``,
DataDog/datadog-go ``statsd/format.go``)::

    _sc|<name>|<status>|#<tag>,<tag>|m:<message>\n

No ``d:`` (the Agent stamps the time it read it) and no ``h:`` (the Agent's own hostname, the
``host`` the monitors group by). The Agent's parser (DataDog/datadog-agent
``comp/dogstatsd/server/impl/parse_service_checks.go``) splits every field on ``|``, and its
listener splits a packet into messages on newlines, so the message is made safe first
(``safe_message``): ``|`` becomes ``¦`` (otherwise the rest of the message would be read as
further fields, tags included), other control characters become a space, and the text is
capped at ``MESSAGE_CAP`` bytes once escaped, ending in ``...``. Then the clients' own escaping
applies: a newline is sent as ``\\n`` and ``m:`` as ``m\\:``. A test holds the datagram equal,
byte for byte, to datadogpy's for the same service check after ``safe_message``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

from selfcheck.model import Result, Snapshot, Status

DEFAULT_PREFIX = "selfcheck"
MESSAGE_CAP = 2048
"""Bytes of escaped message: with the name and tags a datagram stays far under the 8 KiB the
Agent reads at once (``dogstatsd_buffer_size``) and datadogpy sends over a unix socket
(``UDS_OPTIMAL_PAYLOAD_LENGTH``), so no Agent truncates it."""
ELLIPSIS = "..."
TAG_KEYS = ("check", "reason", "required", "view")
VIEWS = ("agent", "own")


class ServiceCheckStatus(enum.IntEnum):
    """The protocol's four values (the Agent's ``rawServiceCheckStatus*``)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def status_of(result: Result | None) -> ServiceCheckStatus:
    """What a monitor should see: only a required check that failed or broke is CRITICAL.

    ``ok`` and ``skipped`` (the capability is there, or not used) are OK; ``degraded``, and a
    failed or broken check that is not required, are WARNING; a check with no result yet is
    UNKNOWN.
    """
    if result is None:
        return ServiceCheckStatus.UNKNOWN
    if result.status in (Status.OK, Status.SKIPPED):
        return ServiceCheckStatus.OK
    if result.status in (Status.FAILED, Status.ERROR) and result.required:
        return ServiceCheckStatus.CRITICAL
    return ServiceCheckStatus.WARNING


def view_of(result: Result) -> str:
    """Whose view the verdict is (``agent`` or ``own``); ``own`` where the result says none."""
    view = str(getattr(result, "view", "own"))
    return view if view in VIEWS else "own"


def tags_of(check: str, result: Result | None, required: bool) -> tuple[str, ...]:
    """Closed sets only: a check id, a reason, a boolean and a view, never a path or a PID.

    A check that has not run has no reason and no view yet, so those tags are left out.
    """
    tags = [f"check:{check}"]
    if result is not None:
        tags.append(f"reason:{result.reason}")
    tags.append(f"required:{'true' if required else 'false'}")
    if result is not None:
        tags.append(f"view:{view_of(result)}")
    return tuple(tags)


def _cleaning_table() -> dict[int, str]:
    """``|`` would end the message field; a control character other than a newline (which the
    clients escape) is shown as a space. Unicode category Cc, exactly: the C0 controls, DEL
    and the C1 controls."""
    table = {code: " " for code in (*range(0x20), *range(0x7F, 0xA0)) if code != ord("\n")}
    table[ord("|")] = "\N{BROKEN BAR}"
    return table


_CLEAN = _cleaning_table()


def _escaped_size(char: str, previous: str) -> int:
    """Bytes ``char`` takes once escaped the clients' way (``\\n``; ``m:`` as ``m\\:``)."""
    if char == "\n":
        return 2
    if char == ":" and previous == "m":
        return 2
    return len(char.encode())


def safe_message(text: str, cap: int = MESSAGE_CAP) -> str:
    """The message as selfcheck hands it to the protocol: ``|`` and control characters
    replaced, cut so that the escaped text holds at most ``cap`` bytes, ``...`` ending a cut.

    A message that fits whole (nearly all) is measured in one pass of C code; only one
    that must be cut is walked character by character, to find where.
    """
    cleaned = text.translate(_CLEAN)
    if len(escape(cleaned).encode()) <= cap:
        return cleaned
    total, previous, fits = 0, "", 0
    budget = cap - len(ELLIPSIS)
    for index, char in enumerate(cleaned):
        total += _escaped_size(char, previous)
        previous = char
        if total <= budget:
            fits = index + 1
        if total > cap:
            return cleaned[:fits] + ELLIPSIS
    return cleaned


def escape(message: str) -> str:
    """The clients' escaping of a service check message (datadogpy
    ``_escape_service_check_message``): the Agent's listener splits a packet on newlines, and
    ``m:`` opens the message field."""
    return message.replace("\n", "\\n").replace("m:", "m\\:")


def datagram(name: str, status: int, tags: tuple[str, ...], message: str) -> bytes:
    """One service check, as the official clients format it (no timestamp, no hostname),
    ended by a newline as datadogpy ends every message (the Agent reads a packet line by line)."""
    text = f"_sc|{name}|{status}"
    if tags:
        text += "|#" + ",".join(tags)
    body = escape(safe_message(message))
    if body:
        text += f"|m:{body}"
    return f"{text}\n".encode()


def service_check_name(prefix: str, check: str) -> str:
    return f"{prefix}.{check}"


def datagrams(snapshot: Snapshot, prefix: str) -> Iterator[tuple[str, bytes]]:
    """``(check id, datagram)`` for every check of the snapshot, in report order; a check
    with no result yet is UNKNOWN, with a message that says so."""
    for check in snapshot.check_ids:
        result = snapshot.results.get(check)
        required = check in snapshot.required
        message = result.outcome.message if result is not None else f"{check} has not run yet"
        yield (
            check,
            datagram(
                service_check_name(prefix, check),
                int(status_of(result)),
                tags_of(check, result, required),
                message,
            ),
        )
