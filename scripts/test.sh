#!/bin/bash
# The whole test suite: fast unit tests, then the slow integration tests that
# build real images and boot real VMs (shared across tests: one build, one cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/pytest -v -rA --durations=20 tests/unit tests/integration "$@"
