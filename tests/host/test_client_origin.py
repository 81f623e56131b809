"""The clients' origin rule, checked against the real datadogpy client from PyPI.

``datadog`` (datadogpy) is the official DogStatsD client; its ``Cgroup`` reader is the code
that decides what a Python application sends in ``c:``. Each cgroup file below is fed both to
it (through its own ``CGROUP_PATH`` attribute) and to ``client_id_from_cgroup``: they must
agree, and the Agent's rule must then recognise what the client sends, or not, as stated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from datadog.dogstatsd.container import Cgroup

from selfcheck.host.client_origin import (
    agent_recognises,
    client_id_from_cgroup,
    client_id_from_mountinfo,
)

CID = "4f1c2b9d8e7a6f5c4b3a29180f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"
POD = "3b6f29b1-8d5c-4f0e-9a43-1c2d7e8f9a0b"
TASK = "34dc0b5e626f2c5c4c5170e34b10e765-1234567890"

CASES = [
    # (cgroup file, what the client sends, whether the Agent's rule recognises it)
    (f"12:memory:/docker/{CID}\n0::/docker/{CID}\n", CID, True),
    (
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"{POD.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n",
        CID,
        True,
    ),
    (f"0::/system.slice/crio-{CID}.scope\n", CID, True),
    (f"4:memory:/kubepods/besteffort/pod{POD}/{CID}\n", CID, True),
    (f"4:memory:/ecs/{TASK.split('-', maxsplit=1)[0]}/{TASK}\n", TASK, True),
    # a process in a pod-level cgroup: the client sends the pod UID, the Agent has no such ID
    (f"0::/kubepods/besteffort/pod{POD}\n", POD, False),
    ("0::/\n", None, False),
    ("0::/user.slice/user-0.slice/session-1.scope\n", None, False),
    ("garbage\n\n", None, False),
]


def _datadogpy(tmp_path: Path, text: str) -> str | None:
    path = tmp_path / "cgroup"
    path.write_text(text)
    reader = Cgroup.__new__(Cgroup)
    reader.CGROUP_PATH = str(path)
    sent = reader._read_cgroup_path()
    return sent.removeprefix("ci-") if sent else None


@pytest.mark.parametrize(("text", "sent", "recognised"), CASES)
def test_client_id_agrees_with_datadogpy(
    tmp_path: Path, text: str, sent: str | None, recognised: bool
) -> None:
    assert _datadogpy(tmp_path, text) == sent
    assert client_id_from_cgroup(text) == sent
    assert (sent is not None and agent_recognises(sent)) is recognised


def test_go_digits_only_ascii() -> None:
    """Go's \\d is ASCII: an ECS-like ID with Arabic-Indic digits is no ID."""
    assert client_id_from_cgroup(f"0::/ecs/{'a' * 32}-\u0661\u0662\n") is None


def test_mountinfo_fallback_takes_the_container_not_the_sandbox() -> None:
    docker = (
        f"612 600 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - ext4 "
        "/dev/sda1 rw\n"
    )
    sandbox = (
        f"700 600 0:5 /var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/{CID}/hostname "
        "/etc/hostname rw - ext4 /dev/sda1 rw\n"
    )
    assert client_id_from_mountinfo("1 0 0:1 / / rw - overlay overlay rw\n" + docker) == CID
    assert client_id_from_mountinfo(sandbox) is None
    assert client_id_from_mountinfo("") is None
