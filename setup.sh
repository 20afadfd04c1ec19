#!/usr/bin/env bash
# Creates .venv with bbans and its test tools. torch is pinned first to the CPU build
# 2.13.0 (a bare `torch` requirement would fetch several GB of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
