"""The exit codes of every ``selfcheck`` command, in one leaf module that imports nothing.

They follow the monitoring-plugin convention on-call people already know (the return codes
of the Monitoring Plugins development guidelines, which Nagios and Icinga read): 0 every
check ok, 1 only degraded or optional failures, 2 a required check failed, 3 unknown (bad
usage, bad configuration, internal error). ``cli``, ``fleet`` and ``lint`` all answer with
them; kept here, below all three, so none imports another for a number.
"""

from __future__ import annotations

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3

EXIT_INTERRUPTED = 128 + 2
"""Ctrl-C: the shell's convention for a command ended by SIGINT."""

EXIT_BROKEN_PIPE = 128 + 13
"""The output's reader went away (``selfcheck lint -f x.yaml | head -3``): the status a shell
shows for a coreutils command ended by SIGPIPE (``yes | head -1`` under ``set -o pipefail``),
with no message. Not 1, Python's own default for it, which means "warning" here."""
