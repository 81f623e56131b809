"""``become``: a real child process takes the Agent's uid, gid, groups and capability sets.

Each case runs a fresh Python child (the helper's situation: it starts as root with this
machine's capabilities), calls ``become`` first, then tries the accesses a capability decides:
a mode 000 file only ``CAP_DAC_OVERRIDE`` opens. The child prints its own ``status`` sets and
what the opens gave, and the test asserts those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from selfcheck.host.capabilities import mask_of
from selfcheck.host.eyes import Credentials
from tests.support.run import base_env

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="changing uid and capabilities needs root"),
]

CHILD = """
import json, os, sys
from selfcheck.host.become import become
from selfcheck.host.eyes import Credentials
from selfcheck.host.identity import read_identity
asked = json.loads(sys.argv[1])
out = {}
try:
    for creds in asked["steps"]:
        become(Credentials.from_json(creds))
except OSError as error:
    out["error"] = [error.errno, str(error)]
caps = read_identity().capabilities
out["sets"] = [caps.effective, caps.permitted, caps.bounding, caps.ambient]
out["ids"] = [os.geteuid(), os.getegid(), sorted(os.getgroups())]
for path in asked["open"]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        out[path] = "opened"
    except OSError as error:
        out[path] = os.strerror(error.errno)
print(json.dumps(out))
"""


def _child(steps: list[Credentials], opens: list[Path]) -> dict[str, Any]:
    body = json.dumps({"steps": [s.to_json() for s in steps], "open": [str(p) for p in opens]})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, body],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
        cwd="/",
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


@pytest.fixture
def sealed(tmp_path: Path) -> Path:
    """A file only ``CAP_DAC_OVERRIDE`` opens: mode 000, owned by root, in a world-open dir."""
    tmp_path.chmod(0o755)
    path = tmp_path / "sealed"
    path.write_text("secret of nobody\n")
    path.chmod(0)
    return path


def test_a_root_agent_without_capabilities_is_denied_what_root_with_them_opens(
    sealed: Path,
) -> None:
    full = _child([], [sealed])
    assert full[str(sealed)] == "opened"  # selfcheck's own eyes: CAP_DAC_OVERRIDE
    dropped = _child([Credentials(0, 0, frozenset())], [sealed])
    assert "error" not in dropped, dropped
    assert dropped["sets"] == [0, 0, 0, 0]
    assert dropped["ids"] == [0, 0, []]
    assert dropped[str(sealed)] == "Permission denied"


def test_a_uid_100_agent_keeps_exactly_the_capabilities_it_holds(sealed: Path) -> None:
    dac = mask_of(["CAP_DAC_OVERRIDE"])
    bounding = mask_of(["CAP_DAC_OVERRIDE", "CAP_CHOWN"])
    taken = _child([Credentials(100, 101, frozenset({999}), dac, dac, bounding)], [sealed])
    assert "error" not in taken, taken
    assert taken["ids"] == [100, 101, [999]]
    assert taken["sets"] == [dac, dac, bounding, 0]
    assert taken[str(sealed)] == "opened"
    bare = _child([Credentials(100, 101, frozenset())], [sealed])
    assert bare["sets"] == [0, 0, 0, 0]
    assert bare[str(sealed)] == "Permission denied"


def test_a_capability_it_does_not_hold_is_an_error_naming_it(sealed: Path) -> None:
    dac = mask_of(["CAP_DAC_OVERRIDE"])
    none = Credentials(0, 0, frozenset(), 0, 0, mask_of(["CAP_SETPCAP"]))
    asked = _child([none, Credentials(0, 0, frozenset(), dac, dac, 0)], [sealed])
    assert asked["error"][0] == 1  # EPERM
    assert "selfcheck does not hold CAP_DAC_OVERRIDE" in asked["error"][1]
    assert asked[str(sealed)] == "Permission denied"


def test_credentials_round_trip_and_refuse_anything_else() -> None:
    creds = Credentials(100, 101, frozenset({5, 999}), 1, 3, 7)
    assert Credentials.from_json(json.loads(json.dumps(creds.to_json()))) == creds
    for broken in (
        {**creds.to_json(), "uid": "0"},
        {**creds.to_json(), "effective": True},
        {**creds.to_json(), "groups": "5"},
        {**creds.to_json(), "permitted": -1},
    ):
        with pytest.raises(ValueError):
            Credentials.from_json(broken)
    with pytest.raises(KeyError):
        Credentials.from_json({"uid": 0})
