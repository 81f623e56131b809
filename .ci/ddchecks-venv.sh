#!/usr/bin/env bash
# Install the Datadog Agent's own check toolkit, datadog-checks-base with its [deps] extra
# (OpenMetricsBaseCheckV2, the aggregator stub), pinned, into a virtual environment of its own:
# it pins many libraries, which must not meet the project's. tests/datadog/ runs the Agent's
# OpenMetrics scraper in it as a subprocess (SELFCHECK_DDCHECKS_VENV, default below).
#
# 38.5.0: the newer releases' [deps] pin certifi==2026.10.19, which the index no longer serves
# (only 2026.10.19.post1), so they cannot be installed as published.
#
# usage: .ci/ddchecks-venv.sh [VENV]     default: $SELFCHECK_DDCHECKS_VENV or /opt/selfcheck-ddchecks
set -euo pipefail

venv=${1:-${SELFCHECK_DDCHECKS_VENV:-/opt/selfcheck-ddchecks}}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# --no-compile: the tests import a few of these modules, compiled on first use, not the
# thousands pip would compile up front (a sixth of the install's CPU time for checkov's).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile \
    "datadog-checks-base[deps]==38.5.0"
